"""Checks before a training run starts, and the names they share with it: where the run's folder is and which
model it trains. ``preflight`` needs no process group and no model and has no side effects, so the CLI runs it
before launching anything (``clipctl train``, ``--dry-run``) and a bad flag costs one line, not a start-up."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from clipctl.checkpoint import is_sharded_checkpoint
from clipctl.config.resolver import ResolvedModel, resolve_model
from clipctl.config.run import TrainConfig, report_targets
from clipctl.errors import ClipctlError
from clipctl.fileio import check_output_target
from clipctl.runtime import parse_device
from clipctl.train.distributed import world_from_env
from clipctl.train.run_log import check_reporters


def run_dir_of(cfg: TrainConfig) -> Path | None:
    if str(cfg.logs).lower() == "none":
        return None
    return Path(cfg.logs) / str(cfg.name)


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


def _is_checkpoint(value: str) -> bool:
    return Path(value).is_file() or is_sharded_checkpoint(value)


def resolve_student(cfg: TrainConfig) -> ResolvedModel:
    """The model being trained. A ``local-dir:`` folder without weights trains from random weights (its
    ``notes`` say so), as in OpenCLIP; inference commands refuse such a folder unless ``--pretrained none``."""
    return resolve_model(
        cfg.model,
        cfg.pretrained or None,
        allow_random_weights=True,
        force_quick_gelu=cfg.force_quick_gelu,
        force_custom_text=cfg.force_custom_text,
        force_context_length=cfg.force_context_length,
    )


def preflight(cfg: TrainConfig, *, world_size: int | None = None) -> None:
    """Every check that needs no process group and no model: data, names, files, folders, optional packages.

    Raises ClipctlError (one line, exit 2) on the first problem.
    """
    from clipctl.train.data import validate_data_config
    from clipctl.train.evaluate import check_eval_paths

    if world_size is None:
        world_size = world_from_env()[2]
    run_dir = run_dir_of(cfg)
    if run_dir is not None:
        check_output_target(run_dir, what="--logs/--name", kind="folder")
    if run_dir is not None and run_dir.exists() and cfg.resume is None and any(run_dir.iterdir()):
        raise ClipctlError(
            f"run folder {run_dir} already exists: continue it with `clipctl resume {run_dir}`, "
            "or pick another --name"
        )
    if cfg.resume not in (None, "latest") and not _is_checkpoint(cfg.resume):
        raise ClipctlError(
            f"--resume {cfg.resume}: no such checkpoint file or folder (or pass --resume latest)"
        )
    if cfg.pretrained and _looks_like_path(cfg.pretrained) and not _is_checkpoint(cfg.pretrained):
        raise ClipctlError(
            f"--pretrained {cfg.pretrained}: no such weights file or sharded checkpoint folder"
        )
    if cfg.fsdp_cpu_offload and parse_device(cfg.device).type != "cuda":
        raise ClipctlError("--fsdp-cpu-offload moves shards from GPU to host memory: it needs --device cuda")
    resolve_student(cfg)
    if cfg.distill_model:
        if _looks_like_path(cfg.distill_pretrained) and not Path(cfg.distill_pretrained).is_file():
            raise ClipctlError(f"teacher weights {cfg.distill_pretrained}: no such file")
        resolve_model(cfg.distill_model, cfg.distill_pretrained)
    check_reporters(report_targets(cfg.report_to))
    if cfg.use_bnb_linear and importlib.util.find_spec("bitsandbytes") is None:
        raise ClipctlError("--use-bnb-linear needs bitsandbytes: pip install bitsandbytes")
    if cfg.remote_sync:
        from clipctl.train.remote_sync import check_remote_sync

        check_remote_sync(cfg.remote_sync, cfg.remote_sync_protocol)
    check_eval_paths(cfg)
    validate_data_config(cfg, world_size=world_size)
