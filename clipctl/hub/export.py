"""Write a model in the Hub layout: ``open_clip_config.json``, ``open_clip_model.safetensors``, optionally
``open_clip_pytorch_model.bin``, the tokenizer files of a Hugging Face text tower, and a ``README.md`` card.

``open_clip_config.json`` is ``{"model_cfg": ..., "preprocess_cfg": {mean, std, interpolation, resize_mode}}``,
the shape OpenCLIP writes and reads, so ``local-dir:DIR`` / ``hf-hub:ORG/REPO`` load in both libraries.

A folder is written into a hidden staging folder beside it first and moved into place at the end, so an
interrupted export never leaves a half-written model. A folder that already holds another model is refused
unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipctl.config.resolver import HUB_CONFIG_NAME
from clipctl.errors import ClipctlError
from clipctl.fileio import atomic_folder, check_output_target
from clipctl.hub.card import CARD_MARKER

SAFETENSORS_NAME = "open_clip_model.safetensors"
BIN_NAME = "open_clip_pytorch_model.bin"
README_NAME = "README.md"
# Our own weight names (any stale one is removed when a folder is rewritten, so loaders never pick old weights).
OPEN_CLIP_WEIGHT_NAMES = (
    SAFETENSORS_NAME,
    "open_clip_pytorch_model.safetensors",
    BIN_NAME,
    "open_clip_pytorch_model.pth",
)
# Files a Hugging Face tokenizer's save_pretrained may write; cleared when --overwrite replaces another model.
TOKENIZER_FILE_NAMES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
PREPROCESS_KEYS_WRITTEN = ("mean", "std", "interpolation", "resize_mode")
DEFAULT_LICENSE = "mit"


@dataclass
class RunInfo:
    """What a clipctl run folder tells about a checkpoint taken from ``runs/NAME/checkpoints/``."""

    run_dir: Path
    checkpoint: Path
    config: dict[str, Any]
    epoch: int | None = None


@dataclass
class PreparedModel:
    """A loaded model and everything needed to write it in the Hub layout."""

    model: Any
    model_name: str
    pretrained: str | None
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    tokenizer: Any = None
    run: RunInfo | None = None
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    weights_description: str | None = None  # the card's "weights" line when it is none of the above (a soup)


@dataclass
class ExportResult:
    folder: Path
    files: list[str]
    model_name: str
    pretrained: str | None
    kept_readme: bool = False


# --- provenance -------------------------------------------------------------------------------------------------


def find_run(pretrained: str | None) -> RunInfo | None:
    """The run folder a checkpoint path belongs to (``RUN/checkpoints/X.pt`` with ``RUN/config.yaml``), if any."""
    if not pretrained:
        return None
    path = Path(pretrained).expanduser()
    if not path.is_file() or path.parent.name != "checkpoints":
        return None
    config_path = path.parent.parent / "config.yaml"
    if not config_path.is_file():
        return None
    from clipctl.config.run import load_run_config_file

    return RunInfo(
        run_dir=path.parent.parent,
        checkpoint=path,
        config=load_run_config_file(str(config_path)),
        epoch=_checkpoint_epoch(path),
    )


def _checkpoint_epoch(path: Path) -> int | None:
    if path.suffix not in (".pt", ".pth", ".bin"):
        return None
    import torch

    try:
        # mmap: only the scalars are read, not the weights
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a plain or foreign file simply has no epoch to report
        return None
    epoch = ckpt.get("epoch") if isinstance(ckpt, dict) else None
    return int(epoch) if isinstance(epoch, int) else None


def _run_build_options(run: RunInfo | None, model_name: str) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """Model-building options a run was trained with: ``(force_* kwargs, preprocess overrides, model kwargs)``.

    Only applied when the checkpoint is loaded into the architecture the run trained, so the exported config
    describes the weights (QuickGELU, image size, context length, SigLIP's bias) and their preprocessing.
    """
    if run is None or str(run.config.get("model", "")) != model_name:
        return {}, {}, {}
    cfg = run.config
    image_size = cfg.get("force_image_size") or None
    if isinstance(image_size, list):
        image_size = image_size[0] if len(image_size) == 1 else tuple(image_size)
    forces = {
        "force_quick_gelu": bool(cfg.get("force_quick_gelu")),
        "force_custom_text": bool(cfg.get("force_custom_text")),
        "force_image_size": image_size,
        "force_context_length": cfg.get("force_context_length"),
    }
    preprocess: dict[str, Any] = {}
    start_tag = cfg.get("pretrained")
    if start_tag:
        from clipctl.config.pretrained import get_pretrained_cfg

        # Fine-tuned from a tag: the run used that tag's preprocessing unless its flags said otherwise.
        tag_cfg = get_pretrained_cfg(model_name, str(start_tag))
        preprocess.update({k: tag_cfg[k] for k in PREPROCESS_KEYS_WRITTEN if tag_cfg.get(k) is not None})
        if tag_cfg.get("quick_gelu"):
            forces["force_quick_gelu"] = True
    for key, cfg_key in (
        ("mean", "image_mean"),
        ("std", "image_std"),
        ("interpolation", "image_interpolation"),
        ("resize_mode", "image_resize_mode"),
    ):
        value = cfg.get(cfg_key)
        if value:
            preprocess[key] = (
                tuple(value) * (3 if len(value) == 1 else 1) if isinstance(value, list) else value
            )
    model_kwargs = {"init_logit_bias": -10.0} if cfg.get("siglip") else {}
    return forces, preprocess, model_kwargs


# --- loading ------------------------------------------------------------------------------------------------------


@dataclass
class ModelPlan:
    """What will be loaded, decided without building anything (so bad output folders fail fast)."""

    model_name: str
    pretrained: str | None
    model_cfg: dict[str, Any]
    run: RunInfo | None
    build_kwargs: dict[str, Any]
    resolved: Any


def plan_model(model_name: str | None, pretrained: str | None) -> ModelPlan:
    """Resolve the model to publish; ``model_name`` may be omitted for a checkpoint from a clipctl run."""
    from clipctl.config.resolver import HF_HUB_PREFIX, LOCAL_DIR_PREFIX, resolve_model

    run = find_run(pretrained)
    if not model_name:
        if run is None or not run.config.get("model"):
            raise ClipctlError(
                "--model is missing (it can only be left out for a checkpoint inside a clipctl run folder)"
            )
        model_name = str(run.config["model"])
    carries_weights = model_name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX))
    if not pretrained and not carries_weights:
        raise ClipctlError(
            f"no weights to publish: pass --pretrained TAG (see `clipctl models show {model_name}`) "
            "or --pretrained PATH to a checkpoint"
        )
    forces, preprocess_overrides, model_kwargs = _run_build_options(run, model_name)
    resolved = resolve_model(
        model_name, pretrained, force_preprocess_cfg=preprocess_overrides or None, **forces
    )
    model_cfg = resolved.model_cfg
    model_cfg.update(model_kwargs)  # SigLIP's init_logit_bias: the built model then has a logit_bias
    model_cfg.get("text_cfg", {}).pop("hf_model_pretrained", None)
    if run is not None and run.config.get("hf_tokenizer_name") and str(run.config.get("model")) == model_name:
        # `clipctl train --hf-tokenizer-name` trained with that tokenizer; the published config must say so.
        model_cfg.setdefault("text_cfg", {})["hf_tokenizer_name"] = str(run.config["hf_tokenizer_name"])
    build_kwargs = {"force_preprocess_cfg": preprocess_overrides or None, **forces, **model_kwargs}
    return ModelPlan(model_name, pretrained, model_cfg, run, build_kwargs, resolved)


def load_planned(plan: ModelPlan, *, weights_only: bool = True) -> PreparedModel:
    """Build the planned model with its weights (strictly) and collect preprocessing and tokenizer."""
    from clipctl.api import create_model, get_tokenizer

    model = create_model(
        plan.model_name,
        plan.pretrained,
        precision="fp32",
        require_pretrained=True,
        weights_only=weights_only,
        **plan.build_kwargs,
    ).eval()
    preprocess_cfg = {}
    for key in PREPROCESS_KEYS_WRITTEN:
        value = model.visual.preprocess_cfg.get(key)
        if value is not None:
            preprocess_cfg[key] = list(value) if isinstance(value, tuple) else value
    tokenizer = None
    text_cfg = plan.model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):
        if plan.run is not None:
            from clipctl.tokenizer import build_tokenizer

            tokenizer = build_tokenizer(text_cfg)  # the config, which carries a run's tokenizer override
        else:
            tokenizer = get_tokenizer(plan.model_name)  # a local-dir model's own tokenizer files first
    return PreparedModel(
        model=model,
        model_name=plan.resolved.name,
        pretrained=plan.resolved.pretrained,
        model_cfg=plan.model_cfg,
        preprocess_cfg=preprocess_cfg,
        tokenizer=tokenizer,
        run=plan.run,
        pretrained_cfg=plan.resolved.pretrained_cfg,
    )


def prepare_model(
    model_name: str | None, pretrained: str | None, *, weights_only: bool = True
) -> PreparedModel:
    """Load ``model_name`` with ``pretrained`` weights (tag or file) and collect its config, preprocessing,
    tokenizer and provenance."""
    return load_planned(plan_model(model_name, pretrained), weights_only=weights_only)


# --- writing ------------------------------------------------------------------------------------------------------


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _visible_entries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def check_output_folder(folder: Path, model_cfg: dict[str, Any], overwrite: bool) -> bool:
    """Refuse a folder that holds something else; return True if it holds another model being replaced."""
    check_output_target(folder, what="--local-dir", kind="folder")
    if not folder.exists():
        return False
    entries = _visible_entries(folder)
    if not entries:
        return False
    config_path = folder / HUB_CONFIG_NAME
    if not config_path.is_file():
        if overwrite:
            return True
        raise ClipctlError(
            f"{folder} is not empty and holds no {HUB_CONFIG_NAME}; pick an empty or new folder "
            "(or pass --overwrite to write the model files into it)"
        )
    try:
        existing = json.loads(config_path.read_text()).get("model_cfg")
    except (OSError, ValueError, AttributeError):
        existing = None
    if existing is not None and _canonical(existing) == _canonical(model_cfg):
        return False
    if overwrite:
        return True
    raise ClipctlError(
        f"{folder} already holds another model (its {HUB_CONFIG_NAME} describes a different architecture); "
        "pass --overwrite to replace it, or pick another folder"
    )


def _is_generated_card(path: Path) -> bool:
    try:
        return CARD_MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _write_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_layout(
    prepared: PreparedModel,
    folder: Path,
    *,
    reference: str,
    write_bin: bool = False,
    license: str = DEFAULT_LICENSE,
    write_readme: bool = True,
) -> list[str]:
    """Write every file of the Hub layout into the existing ``folder``; returns the names written.

    ``reference`` is how the card's usage snippets name the model (``hf-hub:ORG/REPO`` or ``local-dir:DIR``).
    """
    import torch
    from safetensors.torch import save_file

    from clipctl.hub.card import render_model_card

    state_dict = {k: v.detach().cpu().contiguous() for k, v in prepared.model.state_dict().items()}
    # safetensors refuses tensors sharing memory (tied weights); cloned copies hold the same values.
    save_file({k: v.clone() for k, v in state_dict.items()}, str(folder / SAFETENSORS_NAME), {"format": "pt"})
    written = [SAFETENSORS_NAME]
    if write_bin:
        torch.save(state_dict, folder / BIN_NAME)
        written.append(BIN_NAME)
    if prepared.tokenizer is not None:
        before = set(os.listdir(folder))
        prepared.tokenizer.save_pretrained(str(folder))
        written += sorted(set(os.listdir(folder)) - before)
    config = {"model_cfg": prepared.model_cfg, "preprocess_cfg": prepared.preprocess_cfg}
    _write_json(config, folder / HUB_CONFIG_NAME)
    written.append(HUB_CONFIG_NAME)
    if write_readme:
        card = render_model_card(
            prepared, reference=reference, license=license, files=[*written, README_NAME]
        )
        (folder / README_NAME).write_text(card, encoding="utf-8")
        written.append(README_NAME)
    return written


def write_hub_folder(
    prepared: PreparedModel,
    folder: str | os.PathLike,
    *,
    repo_id: str | None = None,
    write_bin: bool = False,
    overwrite: bool = False,
    license: str = DEFAULT_LICENSE,
) -> ExportResult:
    """Write ``prepared`` into ``folder`` in the Hub layout, atomically.

    A folder holding the same architecture is updated in place (its stale weight files removed); one holding
    another model, or unrelated files, is refused unless ``overwrite``. A ``README.md`` that clipctl did not
    write is kept unless ``overwrite``.
    """
    folder = Path(folder).expanduser()
    replacing_other = check_output_folder(folder, prepared.model_cfg, overwrite)
    readme = folder / README_NAME
    keep_readme = readme.is_file() and not overwrite and not _is_generated_card(readme)
    existed = folder.exists()
    with atomic_folder(folder, merge=True) as stage:
        written = write_layout(
            prepared,
            stage,
            reference=f"hf-hub:{repo_id}" if repo_id else f"local-dir:{folder}",
            write_bin=write_bin,
            license=license,
            write_readme=not keep_readme,
        )
    if existed:
        stale = [n for n in OPEN_CLIP_WEIGHT_NAMES if n not in written]
        if replacing_other:
            stale += [n for n in TOKENIZER_FILE_NAMES if n not in written]
        for name in stale:
            (folder / name).unlink(missing_ok=True)
    return ExportResult(
        folder=folder,
        files=sorted(written),
        model_name=prepared.model_name,
        pretrained=prepared.pretrained,
        kept_readme=keep_readme,
    )


def export_to_folder(
    model_name: str | None,
    pretrained: str | None,
    folder: str | os.PathLike,
    *,
    repo_id: str | None = None,
    write_bin: bool = False,
    overwrite: bool = False,
    license: str = DEFAULT_LICENSE,
    weights_only: bool = True,
) -> ExportResult:
    """Load a model and write it to ``folder`` in the Hub layout (``local-dir:FOLDER`` loads it back).

    The folder is checked before the weights are loaded, so a refused folder costs nothing.
    """
    plan = plan_model(model_name, pretrained)
    check_output_folder(Path(folder).expanduser(), plan.model_cfg, overwrite)
    prepared = load_planned(plan, weights_only=weights_only)
    return write_hub_folder(
        prepared, folder, repo_id=repo_id, write_bin=write_bin, overwrite=overwrite, license=license
    )
