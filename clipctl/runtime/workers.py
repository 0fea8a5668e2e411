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


def leave_cores_to_workers(workers: int) -> None:
    """On a CPU, give the compute threads the cores the loader workers do not use.

    Loader workers decode on cores of their own; compute threads that share those cores stall at every
    barrier (2 cores, tiny-RN-demo: 1 compute thread + 1 worker beats 2 threads + none). An explicit
    OMP_NUM_THREADS wins.
    """
    if workers > 0 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, torch.get_num_threads() - workers))


def set_worker_threads(threads: int) -> Callable[[int], None]:
    """A DataLoader ``worker_init_fn`` that gives each worker ``threads`` compute threads."""
    return lambda _worker_id: torch.set_num_threads(threads)
