"""Checkpoints and held-out data for the soup and WiSE-FT tests: random-weight tiny CLIPs (one architecture,
different seeds), one of another width, and the generated coloured-shapes held-out set."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import clipctl
from tests.eval.eval_data import TINY_CFG


def tiny_config(folder: Path, width: int | None = None) -> str:
    """A tiny CLIP config JSON; ``width`` changes the image tower (another architecture)."""
    cfg = json.loads(json.dumps(TINY_CFG))
    name = "tiny-soup"
    if width is not None:
        cfg["vision_cfg"]["width"] = width
        name = f"tiny-soup-w{width}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def random_checkpoint(config: str, path: Path, seed: int) -> dict[str, torch.Tensor]:
    """Save a random-weight model's state dict to ``path`` (.pt or .safetensors) and return it."""
    torch.manual_seed(seed)
    state_dict = {k: v.clone() for k, v in clipctl.create_model(config).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state_dict, str(path))
    else:
        torch.save(state_dict, path)
    return state_dict


def heldout_set(folder: Path, per_class: int = 2) -> tuple[str, str]:
    """(ImageFolder, classnames file) of the generated coloured shapes (32 classes)."""
    from clipctl.data.synth import synthesize_dataset

    summary = synthesize_dataset(folder, num_train=1, num_heldout_per_class=per_class, image_size=32)
    return summary.heldout_dir, summary.classnames_file
