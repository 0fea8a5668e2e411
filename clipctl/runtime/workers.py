"""How many cores this process may use, how many loader workers to start, and how many threads each gets."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch

from clipctl.errors import ClipctlError


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: a SLURM or container limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 0:
        raise ClipctlError(f"--workers must be 0 or more, got {workers}")


def resolve_workers(
    workers: int | None, num_items: int | None = None, batch_size: int = 1, *, default_cap: int = 4
) -> int:
    """``None``: up to ``default_cap`` (and no more than the cores); never more workers than batches to share
    out besides the first (``num_items`` known) -- an idle worker only costs start-up time."""
    check_workers(workers)
    chosen = min(default_cap, available_cores()) if workers is None else workers
    if num_items is not None:
        chosen = min(chosen, max(0, math.ceil(num_items / batch_size) - 1))
    return chosen


# Core-seconds one loader worker spends per training sample: 256 px JPEG decode, the ViT-B-32 training
# transform and tokenizing: ~220 images per worker CPU-second (bench/loader.py, 2 cores, 2026-12-03).
LOADER_CORE_SECONDS = 1 / 220
# A conservative fp32 training rate of one core (GFLOP/s); these CPUs reach ~75-90 on large matmuls.
CORE_GFLOPS = 50.0
# A loader process sharing a core with a compute thread gets half of it from the scheduler, and the other
# threads wait at the next barrier for the slowed one: a core-second of loading costs about two of compute.
SHARED_CORE_STALL = 2.0

_STARTUP_THREADS: int | None = None


def _startup_threads() -> int:
    """torch's own thread count before clipctl changed it (calling the chooser twice must not shrink it)."""
    global _STARTUP_THREADS
    if _STARTUP_THREADS is None:
        _STARTUP_THREADS = torch.get_num_threads()
    return _STARTUP_THREADS


def reserved_loader_cores(
    cores: int, workers: int, train_gflops: float | None, loader_core_seconds: float = LOADER_CORE_SECONDS
) -> int:
    """How many of ``cores`` to keep free of compute threads for ``workers`` loader processes.

    Loading that runs on a compute thread's core stalls all threads (see SHARED_CORE_STALL), so a loader that
    needs ``f`` cores slows the step by about ``1 + 2f``; keeping ``r`` cores free costs ``cores / (cores - r)``
    instead. The choice minimises that estimate, with ``f`` from the model's training cost per sample against
    the loader's. Small models keep a core per worker (2 cores: tiny-ViT-8-64 trained at 74 samples/s with 1
    thread + 1 worker, 13 with 2 threads + 1 worker on a busy machine); ViT-B-32 needs ~1% of a core of loading
    and gets every core. Unknown cost (``None``): every worker keeps its core.
    """
    most = min(workers, cores - 1)
    if most <= 0:
        return 0
    if train_gflops is None or train_gflops <= 0:
        return most
    compute_core_seconds = train_gflops / CORE_GFLOPS

    def slowdown(reserved: int) -> float:
        threads = cores - reserved
        loader_cores = loader_core_seconds * threads / compute_core_seconds
        return cores / threads * (1 + SHARED_CORE_STALL * max(0.0, loader_cores - reserved))

    return min(range(most + 1), key=slowdown)


def choose_compute_threads(workers: int, train_gflops: float | None) -> int:
    """On a CPU, set (and return) the compute thread count for a run with ``workers`` loader processes and a
    model costing ``train_gflops`` per training sample (see :func:`reserved_loader_cores`). An explicit
    OMP_NUM_THREADS wins, and without workers the thread count is left as it is."""
    if "OMP_NUM_THREADS" in os.environ or workers <= 0:
        return torch.get_num_threads()
    cores = _startup_threads()
    threads = max(1, cores - reserved_loader_cores(cores, workers, train_gflops))
    torch.set_num_threads(threads)
    return threads


def set_worker_threads(threads: int) -> Callable[[int], None]:
    """A DataLoader ``worker_init_fn`` that gives each worker ``threads`` compute threads."""
    return lambda _worker_id: torch.set_num_threads(threads)
