"""Training checkpoints: what they hold, where they go, and which one a resume picks.

A checkpoint is a dict readable with ``torch.load(weights_only=True)``:
``{"epoch", "step", "batch_in_epoch", "name", "state_dict", "optimizer", "scaler"?, "config", "rng"}``.
``epoch`` counts completed epochs at an epoch boundary (OpenCLIP's meaning, so its tools can resume from ours),
and is the current epoch index with ``batch_in_epoch > 0`` for a mid-epoch checkpoint. ``state_dict`` has no
``module.`` prefix. Files are written to a temporary name and renamed, so a crash never leaves a partial one.

Files under ``runs/NAME/checkpoints/``: ``epoch_K.pt`` at the end of epoch K (``--save-frequency``),
``step_S.pt`` for ``--save-every-n-steps`` (only the newest is kept), and ``epoch_latest.pt``, the newest
checkpoint written (a hard link to it, so it costs no second write; with ``--save-most-recent`` it is also
written at the end of epochs that ``--save-frequency`` skips).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipctl.checkpoint import save_checkpoint_atomic
from clipctl.errors import CheckpointError
from clipctl.fileio import link_atomic

CHECKPOINT_DIR = "checkpoints"
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


@dataclass
class CheckpointInfo:
    path: Path
    epoch: int
    step: int
    batch_in_epoch: int

    @property
    def order(self) -> tuple[int, int]:
        return self.epoch, self.step


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def build_checkpoint(
    *,
    model_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    step: int,
    batch_in_epoch: int,
    name: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    ckpt = {
        "epoch": epoch,
        "step": step,
        "batch_in_epoch": batch_in_epoch,
        "name": name,
        "state_dict": model_state,
        "optimizer": optimizer.state_dict(),
        "config": config,
        "rng": rng_state(),
    }
    if scaler is not None:
        ckpt["scaler"] = scaler.state_dict()
    return ckpt


def save(ckpt: dict[str, Any], path: Path) -> Path:
    return save_checkpoint_atomic(ckpt, path)


def save_as(ckpt: dict[str, Any], folder: Path, names: list[str]) -> Path:
    """Write ``ckpt`` once under ``names[0]`` and give it the other names too (hard links where the file
    system has them, else copies); every name appears atomically. Returns the first path."""
    first = save(ckpt, folder / names[0])
    for name in names[1:]:
        link_atomic(first, folder / name)
    return first


def read_info(path: Path) -> CheckpointInfo | None:
    """Position stored in a checkpoint, or None if the file is not a readable training checkpoint."""
    try:
        # mmap: only the few scalars are read, not the weights
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - truncated, foreign or corrupt files are simply not candidates
        return None
    if not isinstance(ckpt, dict) or "epoch" not in ckpt or "state_dict" not in ckpt:
        return None
    return CheckpointInfo(
        path=path,
        epoch=int(ckpt["epoch"]),
        step=int(ckpt.get("step", -1)),
        batch_in_epoch=int(ckpt.get("batch_in_epoch", 0)),
    )


def find_latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint furthest into training, by the (epoch, step) stored in each file.

    File names are never trusted for ordering (OpenCLIP sorted them, so ``epoch_latest.pt`` or a stray
    ``tmp.pt`` could win over a newer ``epoch_N.pt``).
    """
    folder = Path(run_dir)
    if (folder / CHECKPOINT_DIR).is_dir():
        folder = folder / CHECKPOINT_DIR
    if not folder.is_dir():
        return None
    infos = [info for p in sorted(folder.glob("*.pt")) if (info := read_info(p)) is not None]
    if not infos:
        return None
    return max(infos, key=lambda info: info.order).path


def load_for_resume(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a training checkpoint")
    return ckpt


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def prune_step_checkpoints(folder: Path, keep: Path) -> None:
    for path in folder.glob("step_*.pt"):
        if path != keep and STEP_FILE.match(path.name):
            path.unlink(missing_ok=True)
