"""Process-group setup from the launcher's environment (torchrun or SLURM's srun); no launcher of our own.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``srun`` sets ``SLURM_PROCID``, ``SLURM_LOCALID`` and
``SLURM_NTASKS``. With ``srun`` the rendezvous address comes from ``MASTER_ADDR``/``MASTER_PORT`` (export them
in the sbatch file) or ``--dist-url``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clipctl.errors import ClipctlError, RunFailure
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
    timeout: float | None = None,
) -> DistEnv:
    """Join the process group the launcher set up (if any) and pick this rank's device.

    ``timeout`` (seconds) bounds every collective: a rank that waits longer for another one raises instead of
    hanging (see :func:`collective_failure`)."""
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
        extra = {"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}
        if url == "env://" and "TORCHELASTIC_RESTART_COUNT" in os.environ:
            extra["store"] = _attempt_store(rank, world_size)
        else:
            extra["init_method"] = url
        dist.init_process_group(backend=backend, world_size=world_size, rank=rank, **extra)
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def _attempt_store(rank: int, world_size: int) -> dist.Store:
    """torchrun's store, with the keys of this attempt apart from the previous attempts'.

    torchrun keeps one store across ``--max-restarts`` attempts; gloo reads each peer's address from it, so a
    restarted rank could connect to the address a dead rank published before (measured here: "Connection
    refused", then no process group, in one restart of three)."""
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world_size))
    return dist.PrefixStore(f"clipctl/attempt_{elastic_restart_count()}", store)


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


def elastic_restart_count() -> int:
    """How many times torchrun has restarted this job (``--max-restarts``); 0 outside torchrun."""
    return _int_env("TORCHELASTIC_RESTART_COUNT") or 0


# what gloo and NCCL say when a peer is gone or silent; torch raises them as plain RuntimeErrors
_LOST_PEER = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused")
_TIMED_OUT = ("Timed out", "timed out", "Timeout", "Watchdog caught collective operation timeout")


def collective_failure(err: BaseException, *, rank: int, timeout: float | None) -> RunFailure | None:
    """The one-line failure for a collective that broke because another rank died or stopped answering,
    or None when ``err`` is something else.

    gloo and NCCL raise plain RuntimeErrors; a checkpoint write wraps them in DCP's CheckpointException."""
    if not isinstance(err, RuntimeError) and type(err).__name__ != "CheckpointException":
        return None
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not any("gloo" in line or "NCCL" in line or "c10d" in line for line in lines):
        if not isinstance(err, getattr(dist, "DistError", ())):
            return None
    for markers, cause in (
        (_LOST_PEER, "another rank died (killed, out of memory, or crashed): its connection closed"),
        (
            _TIMED_OUT,
            f"another rank did not answer within --dist-timeout {timeout:g} s" if timeout else "timeout",
        ),
    ):
        hit = next((line for line in lines if any(m in line for m in markers)), None)
        if hit is not None:
            detail = hit.split("] ", 1)[-1][:160]  # gloo prefixes its source location
            return RunFailure(
                f"rank {rank} stopped: {cause} ({detail}); resume with `clipctl resume RUN_DIR`"
            )
    return None
