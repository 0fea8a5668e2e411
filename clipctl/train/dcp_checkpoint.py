"""Sharded checkpoints for ``--fsdp`` runs, written and read with torch.distributed.checkpoint (DCP).

A checkpoint is a folder: one ``__R_0.distcp`` file per rank with its shards of the model and the optimizer
state (keys ``model.<name>`` and ``optim.state.<name>.<slot>``, so any world size can read it back: DCP
re-shards), DCP's ``.metadata`` index, and ``clipctl_state.pt`` (epoch, step, data position, scaler, RNG, run
config) from rank 0. Every rank writes into one hidden staging folder that rank 0 renames into place once all
ranks are done, so a folder named ``epoch_K`` or ``step_S`` is always complete and a write that dies leaves
the previous checkpoint as it was.

With ``--async-checkpoint`` the tensors are copied to host memory, then written by a background thread while
training continues; its collectives use a process group of their own so they never interleave with the
training step's. At most one write is in flight: the next save (and the end of the run) waits for it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipctl.checkpoint import SHARDED_MODEL_KEY
from clipctl.errors import CheckpointError
from clipctl.fileio import publish_folder, remove_stale_stages, stage_folder
from clipctl.train.checkpointing import STATE_FILE
from clipctl.train.distributed import DistEnv, barrier, broadcast_object

logger = logging.getLogger("clipctl.train")
_OPTIM_KEY = "optim"
_SINGLE_PROCESS_WARNING = ".*assuming the intent is to (save|load) in a single process"


def _state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    return {SHARDED_MODEL_KEY: model_state, _OPTIM_KEY: optim_state}


class ShardedCheckpointer:
    """Writes sharded checkpoints; every rank calls :meth:`save` at the same point."""

    def __init__(self, env: DistEnv, *, background: bool = False):
        self.env = env
        self.background = background and env.distributed
        self.pending: Future | None = None
        self._group = None
        if self.background:
            import torch.distributed as dist

            # the background writer's collectives must not interleave with the training step's
            self._group = dist.new_group(backend="gloo")

    def save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        extras: dict[str, Any],
        folder: Path,
        published: Callable[[Path], None],
    ) -> None:
        """Write ``folder`` (model, optimizer, and ``extras`` from rank 0); rank 0 calls ``published(folder)``
        once it is in place (later, from the writer thread, in the background mode)."""
        import torch.distributed.checkpoint as dcp

        self.wait()
        stage = None
        if self.env.is_master:
            remove_stale_stages(folder.parent)
            stage = stage_folder(folder)
            torch.save(extras, stage / STATE_FILE)
        stage = Path(broadcast_object(self.env, str(stage)))  # type: ignore[arg-type]
        state = _state(model, optimizer)
        if self.background:
            self.pending = dcp.async_save(state, checkpoint_id=str(stage), process_group=self._group)
            if self.env.is_master:
                self.pending.add_done_callback(lambda done: _finish(done, stage, folder, published))
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SINGLE_PROCESS_WARNING)
            dcp.save(state, checkpoint_id=str(stage))
        if self.env.is_master:
            publish_folder(stage, folder)
            published(folder)
        barrier(self.env)

    def wait(self) -> None:
        """Block until the background write (if any) is on disk; re-raise its failure."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()


def _finish(done: Future, stage: Path, folder: Path, published: Callable[[Path], None]) -> None:
    """Rank 0, in the writer thread: every rank has written its shards and the metadata is on disk."""
    import shutil

    if done.exception() is not None:
        shutil.rmtree(stage, ignore_errors=True)
        logger.error(f"background checkpoint {folder.name} failed: {done.exception()}")
        return
    publish_folder(stage, folder)
    published(folder)


def load_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load ``folder`` into the (sharded or not) ``model`` and its ``optimizer``, whatever the number of ranks
    that wrote it; returns the rest of the checkpoint (epoch, step, ...)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    try:
        extras = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"cannot read {folder / STATE_FILE}: {type(err).__name__}") from err
    state = _state(model, optimizer)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SINGLE_PROCESS_WARNING)
            dcp.load(state, checkpoint_id=str(folder))
    except Exception as err:  # noqa: BLE001 - DCP wraps every rank's error in one CheckpointException
        raise CheckpointError(f"checkpoint {folder} does not fit this run: {_first_reason(err)}") from err
    set_state_dict(
        model, optimizer, model_state_dict=state[SHARDED_MODEL_KEY], optim_state_dict=state[_OPTIM_KEY]
    )
    return extras


def _first_reason(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith(("RuntimeError", "ValueError", "KeyError", "Size"))]
    return (reasons or lines or [type(err).__name__])[0][:200]
