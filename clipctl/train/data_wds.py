"""Webdataset (tar shard) pipelines for training and evaluation.

Per DataLoader worker: pick shards (weighted resampling, or this worker's slice of a per-epoch shuffle), stream
tar members, group them into samples by key, drop samples without an image or caption, shuffle in a buffer,
decode, augment, tokenize and batch. Everything random is seeded from (run seed, epoch, rank, worker), so a run
is reproducible and a resumed epoch can fast-forward to any batch.

With ``with_labels`` (training under ``--multi-positive``) a sample's ``.cls`` member (a class index as text,
as CLIP_benchmark and img2dataset-style labelled shards store it) becomes its label, ``-1`` where there is none,
and batches are ``(images, tokens, labels)``.

Corrupt input never stops a run: an undecodable image, a sample without image or ``.txt``, or a damaged tar (the
rest of that shard is lost) is skipped and counted in a :class:`SkipCounter`. What cannot be skipped is a shard
set with no usable sample at all; that raises instead of spinning forever.
"""

from __future__ import annotations

import os
import random
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from clipctl.data.shardlist import is_remote, open_shard
from clipctl.errors import ClipctlError
from clipctl.train.data_common import (
    CAPTION_EXTENSION,
    IMAGE_EXTENSIONS,
    LABEL_EXTENSION,
    SharedEpoch,
    SkipCounter,
    batches_before,
    mix_seed,
    seeded_call,
    worker_slot,
)
from clipctl.train.pixels import accepts_arrays, decode_rgb

SHUFFLE_BUFFER = 5000
SHUFFLE_INITIAL = 1000
EMPTY_SHARD_LIMIT = 10  # resampled: if the first this-many shards drawn hold no usable sample, stop

_STREAM_SAMPLES, _STREAM_PASS = 1, 2  # salts for mix_seed


def _split_name(name: str) -> tuple[str, str]:
    folder, base = os.path.split(name)
    stem, dot, ext = base.partition(".")
    return os.path.join(folder, stem), ext.lower() if dot else ""


def iter_tar_samples(
    url: str, counter: SkipCounter | None, exts_seen: Counter | None = None
) -> Iterator[dict[str, Any]]:
    """Samples (dicts of extension -> bytes, plus ``__key__``/``__url__``) in one shard, in file order.

    Members sharing a key prefix form a sample; a repeated extension starts a new one (some writers reuse keys).
    """
    current: dict[str, Any] | None = None
    try:
        with open_shard(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_name(member.name)
                if not ext or os.path.basename(key).startswith("__"):
                    continue
                data = tar.extractfile(member).read()
                if exts_seen is not None:
                    exts_seen[ext] += 1
                if current is None or current["__key__"] != key or ext in current:
                    if current is not None:
                        yield current
                    current = {"__key__": key, "__url__": url}
                current[ext] = data
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        if counter is not None:
            counter.add(f"damaged shard {url}: {exc}")
        current = None  # a half-read sample may be missing members
    if current is not None:
        yield current


def has_image_and_caption(sample: dict[str, Any]) -> bool:
    return CAPTION_EXTENSION in sample and any(ext in sample for ext in IMAGE_EXTENSIONS)


def decode_sample(sample: dict[str, Any], as_array: bool = False) -> tuple[Image.Image | np.ndarray, str]:
    data = next(sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample)
    return decode_rgb(data, as_array), sample[CAPTION_EXTENSION].decode("utf-8")


def sample_label(sample: dict[str, Any]) -> int:
    """The ``.cls`` class index, ``-1`` without one; ValueError if it is not a non-negative integer."""
    if LABEL_EXTENSION not in sample:
        return -1
    label = int(sample[LABEL_EXTENSION].decode("utf-8").strip())
    if label < 0:
        raise ValueError(f"negative .{LABEL_EXTENSION} label {label}")
    return label


def probe_shards(shards: Sequence[str], max_shards: int = 3) -> str | None:
    """None if one of the first local shards holds a usable sample; otherwise why not (for an error message)."""
    reasons = []
    for url in [s for s in shards if not is_remote(s)][:max_shards]:
        seen: Counter = Counter()
        for sample in iter_tar_samples(url, None, seen):
            if has_image_and_caption(sample):
                return None
        found = ", ".join(f".{e}" for e in sorted(seen)) or "nothing readable"
        reasons.append(f"{os.path.basename(url)} has {found}")
    if not reasons:
        return None
    return "; ".join(reasons)


def no_usable_samples_message(shards: Sequence[str], detail: str) -> str:
    shown = ", ".join(shards[:3]) + (f" (+{len(shards) - 3} more)" if len(shards) > 3 else "")
    return (
        f"no usable samples in shards {shown}: every sample needs an image "
        f"({'/'.join('.' + e for e in IMAGE_EXTENSIONS)}) and a .{CAPTION_EXTENSION} caption with the same key; {detail}"
    )


def _buffer_shuffle(samples: Iterator[Any], rng: random.Random, size: int, initial: int) -> Iterator[Any]:
    """Streaming shuffle: emit a random buffered element per input once ``initial`` are buffered."""
    buffer: list[Any] = []
    source = iter(samples)
    for sample in source:
        buffer.append(sample)
        if len(buffer) < size:
            extra = next(source, None)  # read two per output while filling, so the buffer grows to ``size``
            if extra is not None:
                buffer.append(extra)
        if len(buffer) >= initial:
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


class WdsStream(torch.utils.data.IterableDataset):
    """One epoch of batches from webdataset shards, as seen by one DataLoader worker.

    Train mode yields exactly ``batches_per_worker`` full batches per worker (shards repeat if needed, as with
    OpenCLIP's ``with_epoch``); eval mode reads this worker's shards once, in order, with a partial last batch.
    """

    def __init__(
        self,
        shards: Sequence[str],
        *,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        batch_size: int,
        counter: SkipCounter,
        is_train: bool = True,
        weights: Sequence[float] | None = None,
        resampled: bool = False,
        seed: int = 0,
        shared_epoch: SharedEpoch | None = None,
        rank: int = 0,
        world_size: int = 1,
        batches_per_worker: int = 0,
        resume_epoch: int = -1,
        skip_batches: int = 0,
        shuffle_buffer: int | None = None,
        shuffle_initial: int | None = None,
        with_labels: bool = False,
    ):
        super().__init__()
        self.shards = list(shards)
        self.weights = list(weights) if weights is not None else None
        self.preprocess, self.tokenizer = preprocess, tokenizer
        self.batch_size, self.counter, self.is_train = batch_size, counter, is_train
        self.resampled, self.seed = resampled, seed
        self.shared_epoch = shared_epoch or SharedEpoch(0)
        self.rank, self.world_size = rank, world_size
        self.batches_per_worker = batches_per_worker
        self.resume_epoch, self.skip_batches = resume_epoch, skip_batches
        self.shuffle_buffer = SHUFFLE_BUFFER if shuffle_buffer is None else shuffle_buffer
        self.shuffle_initial = min(
            self.shuffle_buffer, SHUFFLE_INITIAL if shuffle_initial is None else shuffle_initial
        )
        self.with_labels = with_labels

    # ---- shard selection ----
    def _worker_shards(self, epoch: int, logical: int, num_workers: int) -> list[str]:
        shards = list(self.shards)
        if self.is_train:
            random.Random(mix_seed(self.seed, epoch)).shuffle(shards)
            shards = shards[self.rank :: self.world_size]
        return shards[logical::num_workers]

    def _raw_samples(self, epoch: int, logical: int, num_workers: int) -> Iterator[dict[str, Any]]:
        key = (self.seed, epoch, self.rank, logical)
        if self.resampled:
            rng = random.Random(mix_seed(*key, _STREAM_PASS))
            opened, usable_total, seen = 0, 0, Counter()
            while True:
                url = rng.choices(self.shards, weights=self.weights)[0]
                usable_total += yield from self._usable(url, seen)
                opened += 1
                if usable_total == 0 and opened >= EMPTY_SHARD_LIMIT:
                    raise ClipctlError(no_usable_samples_message(self.shards, _seen_detail(seen, opened)))
        mine = self._worker_shards(epoch, logical, num_workers)
        if not mine:
            if not self.is_train:
                return
            raise ClipctlError(
                f"{len(self.shards)} shard(s) cannot feed every data worker on every process "
                f"(rank {self.rank} worker {logical} got none): lower --workers or pass --dataset-resampled"
            )
        for pass_index in range(1 if not self.is_train else 2**62):
            order = list(mine)
            if pass_index:
                random.Random(mix_seed(*key, _STREAM_PASS, pass_index)).shuffle(order)
            seen: Counter = Counter()
            usable_in_pass = 0
            for url in order:
                usable_in_pass += yield from self._usable(url, seen)
            if usable_in_pass == 0:
                raise ClipctlError(no_usable_samples_message(mine, _seen_detail(seen, len(mine))))

    def _usable(self, url: str, seen: Counter):
        """Yield this shard's samples that have an image and a caption; return how many there were."""
        usable = 0
        for sample in iter_tar_samples(url, self.counter, seen):
            if has_image_and_caption(sample):
                usable += 1
                yield sample
            else:
                self.counter.add(f"sample {sample['__key__']} in {url} has no image or no .txt")
        return usable

    # ---- samples -> batches ----
    def _decoded(
        self, samples: Iterator[dict[str, Any]]
    ) -> Iterator[tuple[Image.Image | np.ndarray, str, int]]:
        as_array = self.is_train and accepts_arrays(self.preprocess)
        for sample in samples:
            try:
                label = sample_label(sample) if self.with_labels else -1
            except (UnicodeDecodeError, ValueError):
                self.counter.add(
                    f"the .cls of {sample['__key__']} in {sample['__url__']} is not a class index"
                )
                continue
            try:
                yield (*decode_sample(sample, as_array), label)
            except Exception as exc:  # noqa: BLE001 - any decoder failure means one bad sample, not a bad run
                self.counter.add(f"cannot decode {sample['__key__']} in {sample['__url__']}: {exc}")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        physical, num_workers = worker_slot()
        epoch = self.shared_epoch.get()
        skip = self.skip_batches if (self.is_train and epoch == self.resume_epoch) else 0
        # DataLoader takes batches from its workers round-robin starting at worker 0; renumbering the workers
        # makes worker 0 produce global batch `skip`, so the resumed order matches the uninterrupted one
        logical = (physical + skip) % num_workers
        samples = self._raw_samples(epoch, logical, num_workers)
        if self.is_train:
            rng = random.Random(mix_seed(self.seed, epoch, self.rank, logical, _STREAM_SAMPLES))
            samples = _buffer_shuffle(samples, rng, self.shuffle_buffer, self.shuffle_initial)
        decoded = self._decoded(samples)
        if not self.is_train:
            yield from self._eval_batches(decoded)
            return
        to_skip = batches_before(skip, logical, num_workers)
        position = 0
        for batch_index in range(self.batches_per_worker):
            chunk = [item for _, item in zip(range(self.batch_size), decoded, strict=False)]
            if len(chunk) < self.batch_size:
                return  # only reachable if the stream ended, which the raw-sample loop prevents
            first, position = position, position + len(chunk)
            if batch_index < to_skip:
                continue
            seeds = [mix_seed(self.seed, epoch, self.rank, logical, first + i) for i in range(len(chunk))]
            images = torch.stack(
                [seeded_call(self.preprocess, img, s) for (img, *_), s in zip(chunk, seeds, strict=True)]
            )
            tokens = self.tokenizer([caption for _, caption, _ in chunk])
            if self.with_labels:
                yield images, tokens, torch.tensor([label for *_, label in chunk], dtype=torch.long)
            else:
                yield images, tokens

    def _eval_batches(
        self, decoded: Iterator[tuple[Image.Image, str, int]]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            chunk = [item for _, item in zip(range(self.batch_size), decoded, strict=False)]
            if not chunk:
                return
            yield (
                torch.stack([self.preprocess(img) for img, *_ in chunk]),
                self.tokenizer([c for _, c, _ in chunk]),
            )


def _seen_detail(seen: Counter, n_shards: int) -> str:
    found = ", ".join(f".{e} x{c}" for e, c in sorted(seen.items())) or "no readable members"
    return f"the {n_shards} shard(s) read contained {found}"
