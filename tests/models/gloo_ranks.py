"""Run a function in forked gloo processes, one per rank, and collect what each rank returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _run_rank(
    rank: int, world: int, compute: Callable[[int, int], dict[str, Any]], store_path: str, out_dir: str
) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        torch.save(compute(rank, world), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_gloo_ranks(
    compute: Callable[[int, int], dict[str, Any]], world: int, tmp: Path
) -> list[dict[str, Any]]:
    """``compute(rank, world)`` in ``world`` processes joined by a gloo group; the results in rank order."""
    import torch.multiprocessing as mp

    # fork: the children already have torch and clipctl.models imported (spawn re-imports them, ~15 s each on a
    # busy 2-core machine); each rank sets one intra-op thread first, as DataLoader workers do
    mp.start_processes(
        _run_rank,
        args=(world, compute, str(tmp / "store"), str(tmp)),
        nprocs=world,
        join=True,
        start_method="fork",
    )
    return [torch.load(tmp / f"rank{r}.pt") for r in range(world)]
