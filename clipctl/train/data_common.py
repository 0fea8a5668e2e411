"""Pieces shared by the webdataset, CSV and synthetic pipelines: the epoch and skip counters that reach worker
processes, per-sample seeds that make augmentation independent of where a run (re)starts, and the loader
wrapper that turns worker-side errors into one-line messages."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import torch

from clipctl.errors import ClipctlError

log = logging.getLogger("clipctl.train.data")

IMAGE_EXTENSIONS = ("jpg", "png", "jpeg", "webp")
CAPTION_EXTENSION = "txt"
LABEL_EXTENSION = "cls"
_WARN_FIRST_SKIPS = 5


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, identical in every process and Python run (unlike ``hash``)."""
    digest = hashlib.blake2b(struct.pack(f"<{len(parts)}q", *parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class SharedEpoch:
    """The current epoch, visible to DataLoader workers that outlive one epoch (``persistent_workers``)."""

    def __init__(self, epoch: int = 0):
        # no lock: the main process is the only writer
        self._value = mp.Value("q", epoch, lock=False)

    def set(self, epoch: int) -> None:
        self._value.value = epoch

    def get(self) -> int:
        return int(self._value.value)


class SkipCounter:
    """Counts corrupt samples skipped, one slot per process (main + each worker) so no lock is needed."""

    def __init__(self, num_workers: int):
        self._slots = mp.Array("q", max(0, num_workers) + 1, lock=False)

    def add(self, reason: str, n: int = 1) -> None:
        info = torch.utils.data.get_worker_info()
        slot = 0 if info is None else info.id + 1
        if slot >= len(self._slots):
            slot = 0  # a worker beyond the planned count (should not happen); still count it
        self._slots[slot] += n
        if self._slots[slot] <= _WARN_FIRST_SKIPS:
            where = "main process" if info is None else f"worker {info.id}"
            log.warning("skipping corrupt sample (%s, %s)", reason, where)

    def total(self) -> int:
        return int(sum(self._slots))


def seeded_call(transform: Callable[[Any], Any], value: Any, seed: int) -> Any:
    """Run a random augmentation with its RNGs seeded per sample, leaving the caller's RNG state untouched.

    This makes a sample's augmentation depend only on (run seed, epoch, position), so a resumed run sees the same
    crops as an uninterrupted one, whatever ran before in the same process.
    """
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only: torch.manual_seed also seeds every accelerator backend, which costs ~0.3 ms
        # (as much as decoding a 256 px JPEG) and would change CUDA's RNG behind the caller's back
        torch.default_generator.manual_seed(seed)
        state = random.getstate()
        random.seed(seed)
        try:
            return transform(value)
        finally:
            random.setstate(state)


def batches_before(skip: int, logical_worker: int, num_workers: int) -> int:
    """How many of the first ``skip`` global batches come from ``logical_worker`` (batches go round-robin)."""
    if skip <= logical_worker:
        return 0
    return (skip - logical_worker + num_workers - 1) // num_workers


def worker_slot() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _worker_message(exc: BaseException) -> str:
    """The original one-line message of an exception re-raised by the DataLoader with a worker traceback."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.split(".")[-1] == type(exc).__name__ else last


class LoaderView:
    """What the training loop iterates: the DataLoader plus epoch sizes, with worker errors made one line.

    ``len()`` is the number of batches left in the current epoch (fewer than ``num_batches`` in a resumed one).
    """

    def __init__(
        self,
        loader: torch.utils.data.DataLoader,
        num_batches: int,
        num_samples: int,
        remaining: Callable[[], int],
    ):
        self.loader = loader
        self.num_batches = num_batches
        self.num_samples = num_samples
        self._remaining = remaining

    @property
    def sampler(self) -> Any:
        return self.loader.batch_sampler if self.loader.batch_sampler is not None else self.loader.sampler

    def __len__(self) -> int:
        return self._remaining()

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except ClipctlError as exc:
                raise type(exc)(_worker_message(exc)) from None
            if batch is None:  # every sample of an evaluation batch was corrupt
                continue
            yield batch
