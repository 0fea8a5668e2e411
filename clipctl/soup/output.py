"""Where a soup or a WiSE-FT mix goes: a weights file (``.safetensors``, ``.pt``/``.pth``/``.bin``: a plain state
dict, as every loader reads) or a folder in the Hub layout (``local-dir:FOLDER`` loads it; ``push-to-hub`` can
publish it), written by :func:`clipctl.hub.export.write_hub_folder` with a model card that names the recipe.

Everything is written to a temporary name and renamed, so an interrupted run leaves the old output or none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipctl.errors import ClipctlError

FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass
class OutputTarget:
    """A checked ``--out``: a file, or a Hub-layout folder with the model plan that describes it."""

    path: Path
    is_file: bool
    plan: Any = None  # clipctl.hub.export.ModelPlan for folders


def plan_output(
    out: str | os.PathLike,
    *,
    model: str | None,
    first_ingredient: str,
    overwrite: bool,
) -> OutputTarget:
    """Check ``out`` before any weights are read. A folder needs an architecture: ``model``, a Hub-layout
    ingredient, or a checkpoint inside a clipctl run folder (whose ``config.yaml`` names the model)."""
    path = Path(out).expanduser()
    if path.suffix in FILE_SUFFIXES:
        if path.is_dir():
            raise ClipctlError(
                f"--out {path} is a folder; give a file name or a folder without {path.suffix}"
            )
        if path.exists() and not overwrite:
            raise ClipctlError(f"--out {path} exists; pass --overwrite to replace it")
        return OutputTarget(path, True)
    if path.exists() and not path.is_dir():
        raise ClipctlError(
            f"--out {path} exists and is not a folder; end a file name with {', '.join(FILE_SUFFIXES)}"
        )
    if path.suffix and not path.is_dir():
        raise ClipctlError(
            f"--out {path}: unknown weights format {path.suffix!r}; end the name with "
            f"{', '.join(FILE_SUFFIXES)}, or give a folder name without an extension for the Hub layout"
        )
    from clipctl.hub.export import check_output_folder, plan_model
    from clipctl.soup.ingredients import hub_name

    model_name = model or hub_name(first_ingredient)
    pretrained = None if hub_name(first_ingredient) else first_ingredient
    try:
        plan = plan_model(model_name, pretrained)
    except ClipctlError as err:
        raise ClipctlError(
            f"--out {path} (a folder in the Hub layout) needs the architecture: {err}"
        ) from None
    check_output_folder(path, plan.model_cfg, overwrite)
    return OutputTarget(path, False, plan)


def write_output(
    target: OutputTarget,
    state_dict: dict[str, torch.Tensor],
    *,
    description: str,
    metadata: dict[str, str],
    overwrite: bool,
    weights_only: bool = True,
) -> Path:
    """Write ``state_dict`` to the checked ``target``; returns the file or folder written."""
    from clipctl.checkpoint import save_checkpoint_atomic, save_safetensors_atomic

    if target.is_file:
        target.path.parent.mkdir(parents=True, exist_ok=True)
        if target.path.suffix == ".safetensors":
            save_safetensors_atomic(state_dict, target.path, metadata={"format": "pt", **metadata})
        else:
            save_checkpoint_atomic(state_dict, target.path)
        return target.path
    from clipctl.hub.export import load_planned, write_hub_folder
    from clipctl.soup.ingredients import Ingredient, adapt_to_model

    # The planned model is built with the first ingredient's weights (a strict load), then given the mix.
    prepared = load_planned(target.plan, weights_only=weights_only)
    mixed = adapt_to_model(Ingredient(description, state_dict), prepared.model)
    prepared.model.load_state_dict(mixed.state_dict, strict=True)
    prepared.weights_description = description
    return write_hub_folder(prepared, target.path, overwrite=overwrite).folder
