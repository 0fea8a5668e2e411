"""Where a run reports: console progress (rank 0), ``out.log``, ``metrics.jsonl``, TensorBoard and wandb."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError

logger = logging.getLogger("clipctl.train")


def check_reporters(targets: set[str]) -> None:
    """Fail before any work when a requested reporter is not installed."""
    import importlib.util

    if "wandb" in targets and importlib.util.find_spec("wandb") is None:
        raise ClipctlError("--report-to wandb needs the wandb package: pip install wandb (or drop wandb)")
    if "tensorboard" in targets and importlib.util.find_spec("tensorboard") is None:
        raise ClipctlError("--report-to tensorboard needs the tensorboard package: pip install tensorboard")


def setup_text_logging(log_file: Path | None, *, debug: bool, rank: int, console: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    prefix = f"[rank {rank}] " if rank else ""
    fmt = logging.Formatter(f"%(asctime)s | {prefix}%(levelname)s | %(message)s", "%Y-%m-%d %H:%M:%S")
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(stream)


class MetricsSink:
    """metrics.jsonl lines plus TensorBoard/wandb scalars; rank 0 only (other ranks get a no-op sink)."""

    def __init__(
        self,
        run_dir: Path | None,
        *,
        targets: set[str],
        config: dict[str, Any],
        enabled: bool,
        wandb_project: str = "open-clip",
        wandb_notes: str = "",
        resuming: bool = False,
    ):
        self.enabled = enabled and run_dir is not None
        self.path = run_dir / "metrics.jsonl" if self.enabled else None
        self.tb = None
        self.wandb = None
        if not self.enabled:
            return
        if "tensorboard" in targets:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        if "wandb" in targets:
            import wandb

            self.wandb = wandb
            wandb.init(
                project=wandb_project,
                name=config.get("name"),
                id=config.get("name"),
                notes=wandb_notes,
                config=config,
                resume="auto" if resuming else None,
            )

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3)}
        record.update({k: _jsonable(v) for k, v in values.items()})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        scalars = {
            f"{kind}/{k}": v for k, v in values.items() if isinstance(v, (int, float)) and k != "epoch"
        }
        if self.tb is not None:
            for key, value in scalars.items():
                self.tb.add_scalar(key, value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({**scalars, "step": step}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # strict JSON has no NaN
    return value
