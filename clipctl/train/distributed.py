"""Process-group setup from the launcher's environment (torchrun or SLURM's srun); no launcher of our own.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``srun`` sets ``SLURM_PROCID``, ``SLURM_LOCALID`` and
``SLURM_NTASKS``. With ``srun`` the rendezvous address comes from ``MASTER_ADDR``/``MASTER_PORT`` (export them
in the sbatch file) or ``--dist-url``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clipctl.errors import ClipctlError
from clipctl.runtime import device_for_rank


@dataclass
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_master(self) -> bool:
        return self.rank == 0


def _int_env(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ClipctlError(f"environment variable {name}={value!r} is not an integer") from None
    return None


def world_from_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) as the launcher set them; (0, 0, 1) for a plain process.

    torchrun's variables win over SLURM's, so ``srun torchrun ...`` (one task per node) works too.
    """
    world = _int_env("WORLD_SIZE")
    if world is not None:
        return _int_env("RANK") or 0, _int_env("LOCAL_RANK") or 0, world
    world = _int_env("SLURM_NTASKS")
    if world is not None and world > 1:
        return _int_env("SLURM_PROCID") or 0, _int_env("SLURM_LOCALID") or 0, world
    return 0, 0, 1


def init_distributed(
    *,
    device: str | None = None,
    dist_backend: str | None = None,
    dist_url: str | None = None,
    no_set_device_rank: bool = False,
) -> DistEnv:
    """Join the process group the launcher set up (if any) and pick this rank's device."""
    rank, local_rank, world_size = world_from_env()
    dev = device_for_rank(device, local_rank, set_device_rank=not no_set_device_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = dist_backend or ("nccl" if dev.type == "cuda" else "gloo")
        url = dist_url or "env://"
        if url == "env://" and "MASTER_ADDR" not in os.environ:
            raise ClipctlError(
                "distributed launch without MASTER_ADDR/MASTER_PORT: use torchrun, or export them in the sbatch "
                "file (e.g. MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)), or pass --dist-url"
            )
        # srun gives SLURM_* only: fill what env:// expects so one code path serves both launchers.
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
        os.environ.setdefault("WORLD_SIZE", str(world_size))
        dist.init_process_group(backend=backend, init_method=url, world_size=world_size, rank=rank)
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def broadcast_object(env: DistEnv, obj: object) -> object:
    """Rank 0's value on every rank."""
    if not (env.distributed and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_max(env: DistEnv, value: float) -> float:
    if not (env.distributed and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
