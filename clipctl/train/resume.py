"""Continuing a run from its folder: the run config it was started with, the overrides given now, and the newest
complete checkpoint.

Usable from Python without the CLI::

    from clipctl.train.resume import resume_config
    from clipctl.train.trainer import run_training

    run_training(resume_config("runs/convnext_256", {"epochs": 40}))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clipctl.config.run import TrainConfig, load_run_config_file, resolve_run_config
from clipctl.errors import ClipctlError
from clipctl.train.checkpointing import find_latest_checkpoint


def resume_config(
    run_dir: str | os.PathLike, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> TrainConfig:
    """The config of ``run_dir``'s run (its ``config.yaml``) with ``overrides`` (run-config keys) and ``sets``
    (``key=value`` strings) applied, resuming from its newest complete checkpoint unless ``resume`` is given."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ClipctlError(f"{run_dir} is not a run folder (no config.yaml in it)")
    base = load_run_config_file(str(config_path))
    explicit = dict(overrides or {})
    explicit.setdefault("logs", str(run_dir.resolve().parent))
    explicit.setdefault("name", run_dir.resolve().name)
    if "resume" not in explicit:
        if find_latest_checkpoint(run_dir) is None:
            raise ClipctlError(f"{run_dir}/checkpoints holds no complete checkpoint to resume from")
        explicit["resume"] = "latest"
    return resolve_run_config(None, explicit, sets or [], base=base)
