"""The one resolver for models: turns what the user typed (a name, a schema, a tag, a file) into a
:class:`ResolvedModel` — architecture config, where the weights are, and the preprocessing they need.

Every entry point (Python API, CLI, recipes, resume) goes through :func:`resolve_model`; nothing else reads
model JSON or the tag table.

Precedence for preprocessing: built-in defaults < the tag's (or Hub/local-dir) ``preprocess_cfg`` < explicit
overrides. Unlike OpenCLIP, a local weights file does not silently fall back to the defaults when the
architecture's tags agree on something else (OpenCLIP issues #1068, #920): see :func:`_family_preprocess`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipctl.config.model_checks import check_model_cfg
from clipctl.config.pretrained import clean_tag, get_pretrained_cfg, list_pretrained_tags_by_model
from clipctl.config.registry import (
    get_model_config,
    list_models,
    normalize_model_name,
    read_model_config_file,
)
from clipctl.errors import ClipctlError, UnknownNameError

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
HUB_CONFIG_NAME = "open_clip_config.json"
NO_WEIGHTS = "none"
# The order OpenCLIP 3.3 searches a local-dir for weights; the Hub's default file comes first.
LOCAL_DIR_WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)
HUB_DEFAULT_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
PREPROCESS_KEYS = ("size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")

OPENAI_DATASET_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_DATASET_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class WeightsSource:
    """Where a model's weights come from: a local file, or a file (or the default file) of a Hub repo."""

    path: Path | None = None
    hf_repo_id: str | None = None
    hf_filenames: tuple[str, ...] = ()
    revision: str | None = None

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"hf-hub:{self.hf_repo_id} ({' or '.join(self.hf_filenames)})"


@dataclass
class ResolvedModel:
    name: str
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    pretrained: str | None = None
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    weights: WeightsSource | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def quick_gelu(self) -> bool:
        return bool(self.model_cfg.get("quick_gelu", False))


def default_preprocess_cfg(model_cfg: dict[str, Any]) -> dict[str, Any]:
    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    return {
        "size": size,
        "mode": "RGB",
        "mean": OPENAI_DATASET_MEAN,
        "std": OPENAI_DATASET_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }


def merge_preprocess(base: dict[str, Any], overlay: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (overlay or {}).items():
        if key in PREPROCESS_KEYS and value is not None:
            merged[key] = tuple(value) if isinstance(value, list) else value
    return merged


def _is_path_like(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith(WEIGHT_SUFFIXES) or Path(value).exists()


def _read_hub_config(config_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ClipctlError(f"cannot read {config_path}: {err}") from err
    if not isinstance(data, dict) or "model_cfg" not in data:
        raise ClipctlError(f"{config_path} has no 'model_cfg': not an OpenCLIP/clipctl Hub config")
    return data["model_cfg"], data.get("preprocess_cfg", {})


def _family_preprocess(name: str) -> dict[str, Any]:
    """Preprocessing shared by every tag of an architecture (e.g. SigLIP's squash + 0.5/0.5), else ``{}``.

    Used when weights come from a local file: the user is most likely loading a copy of a known release,
    and the architecture's tags agreeing is strong evidence of what the weights expect.
    """
    tags = list_pretrained_tags_by_model(name)
    if not tags:
        return {}
    cfgs = [get_pretrained_cfg(name, tag) for tag in tags]
    common = {}
    for key in ("mean", "std", "interpolation", "resize_mode"):
        values = {json.dumps(cfg.get(key)) for cfg in cfgs}
        if len(values) == 1 and cfgs[0].get(key) is not None:
            common[key] = cfgs[0][key]
    return common


def _local_file_preprocess(path: Path) -> dict[str, Any]:
    sibling = path.parent / HUB_CONFIG_NAME
    if sibling.is_file():
        return _read_hub_config(sibling)[1]
    return {}


def no_weights_requested(pretrained: str | None) -> bool:
    """``pretrained="none"`` (any case): build the architecture with random weights, whatever the name brings."""
    return isinstance(pretrained, str) and pretrained.strip().lower() == NO_WEIGHTS


def pretrained_label(pretrained: str | None) -> str | None:
    """What results and metadata record as the weights: ``None`` for random weights."""
    return None if not pretrained or no_weights_requested(pretrained) else str(pretrained)


def _local_dir_without_weights(model_name: str, allow_random_weights: bool) -> str:
    """The note for a config-only ``local-dir:`` folder, or the refusal when random weights were not asked for."""
    if not allow_random_weights:
        raise ClipctlError(
            f"{model_name} holds no weights file ({', '.join(LOCAL_DIR_WEIGHT_NAMES[:3])}, ...); "
            "pass --pretrained none to use its architecture with random weights"
        )
    return f"{model_name} holds no weights file: building its architecture with random weights"


@dataclass
class _Resolution:
    """What :func:`resolve_model` has found so far; ``preprocess`` is the overlay on the built-in defaults."""

    name: str
    model_cfg: dict[str, Any]
    preprocess: dict[str, Any] = field(default_factory=dict)
    weights: WeightsSource | None = None
    pretrained: str | None = None
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _from_hub(model_name: str, cache_dir: str | None) -> _Resolution:
    from clipctl.download import fetch_hub_file

    repo_id = model_name[len(HF_HUB_PREFIX) :].strip("/")
    model_cfg, preprocess = _read_hub_config(fetch_hub_file(repo_id, HUB_CONFIG_NAME, cache_dir=cache_dir))
    weights = WeightsSource(hf_repo_id=repo_id, hf_filenames=HUB_DEFAULT_WEIGHT_NAMES)
    return _Resolution(model_name, model_cfg, preprocess, weights)


def _from_local_dir(model_name: str) -> _Resolution:
    folder = Path(model_name[len(LOCAL_DIR_PREFIX) :]).expanduser()
    config_path = folder / HUB_CONFIG_NAME
    if not config_path.is_file():
        raise ClipctlError(
            f"{folder} has no {HUB_CONFIG_NAME}: not a model folder (see `clipctl push-to-hub --local-dir`)"
        )
    model_cfg, preprocess = _read_hub_config(config_path)
    found = [folder / n for n in LOCAL_DIR_WEIGHT_NAMES if (folder / n).is_file()]
    found += sorted(
        p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth") and p not in found
    )
    return _Resolution(model_name, model_cfg, preprocess, WeightsSource(path=found[0]) if found else None)


def _from_json_file(model_name: str) -> _Resolution:
    path = Path(model_name).expanduser()
    if not path.is_file():
        raise ClipctlError(f"model config file {path} does not exist")
    model_cfg = read_model_config_file(path)
    if path.name == HUB_CONFIG_NAME:
        return _Resolution(str(path.parent), model_cfg, _local_file_preprocess(path))
    return _Resolution(path.stem, model_cfg)


def _from_registry(model_name: str) -> _Resolution:
    name = normalize_model_name(model_name)
    model_cfg = get_model_config(name)
    if model_cfg is None:
        raise UnknownNameError(
            "model",
            model_name,
            list_models(),
            hint="see `clipctl models list`; hf-hub:ORG/REPO, local-dir:PATH and .json paths also work",
        )
    return _Resolution(name, model_cfg)


def _resolve_name(model_name: str, cache_dir: str | None) -> _Resolution:
    """The architecture (and, for a Hub repo or model folder, the weights) that the model name alone gives."""
    if model_name.startswith(HF_HUB_PREFIX):
        return _from_hub(model_name, cache_dir)
    if model_name.startswith(LOCAL_DIR_PREFIX):
        return _from_local_dir(model_name)
    if model_name.endswith(".json"):
        return _from_json_file(model_name)
    return _from_registry(model_name)


def _use_tag(found: _Resolution, tag: str, tag_cfg: dict[str, Any]) -> None:
    """Weights and preprocessing from a pretrained tag of the registry."""
    name = found.name
    found.pretrained = clean_tag(tag)
    found.pretrained_cfg = tag_cfg
    found.preprocess = tag_cfg
    if not tag_cfg.get("hf_hub_id"):
        raise ClipctlError(
            f"pretrained tag {name}:{found.pretrained} has no Hub copy; download {tag_cfg.get('url')} and pass the file"
        )
    filenames = (tag_cfg["hf_hub_filename"],) if tag_cfg.get("hf_hub_filename") else HUB_DEFAULT_WEIGHT_NAMES
    found.weights = WeightsSource(hf_repo_id=tag_cfg["hf_hub_id"], hf_filenames=filenames)
    if tag_cfg.get("quick_gelu") and not found.model_cfg.get("quick_gelu"):
        # OpenCLIP only warns here and builds GELU, which gives wrong features (issue #771).
        found.model_cfg["quick_gelu"] = True
        found.notes.append(
            f"{name}:{found.pretrained} was trained with QuickGELU; using it (OpenCLIP would use GELU)"
        )


def _use_pretrained(found: _Resolution, model_name: str, pretrained: str) -> None:
    """Apply ``pretrained``: a tag of the registry, or a weights file (which overrides bundled weights)."""
    if (
        found.weights is not None
        and model_name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX))
        and not _is_path_like(pretrained)
    ):
        raise ClipctlError(
            f"pretrained tag {pretrained!r} does not apply to {model_name}: its weights come with it; "
            "pass a weights file path to override them"
        )
    tag_cfg = get_pretrained_cfg(found.name, pretrained) if not _is_path_like(pretrained) else {}
    if tag_cfg:
        _use_tag(found, pretrained, tag_cfg)
        return
    found.pretrained = pretrained
    path = Path(pretrained).expanduser()
    if path.is_file():
        found.weights = WeightsSource(path=path)
        found.preprocess = _local_file_preprocess(path) or found.preprocess or _family_preprocess(found.name)
    elif _is_path_like(pretrained):
        raise ClipctlError(f"pretrained weights file {pretrained} does not exist")
    else:
        raise UnknownNameError(
            f"pretrained tag for {found.name}",
            pretrained,
            list_pretrained_tags_by_model(found.name),
            hint="see `clipctl models show " + found.name + "`, or pass a weights file path",
        )


def resolve_model(
    model_name: str,
    pretrained: str | None = None,
    *,
    allow_random_weights: bool = False,
    cache_dir: str | None = None,
    force_quick_gelu: bool = False,
    force_custom_text: bool = False,
    force_patch_dropout: float | None = None,
    force_image_size: int | tuple[int, int] | None = None,
    force_context_length: int | None = None,
    force_preprocess_cfg: dict[str, Any] | None = None,
) -> ResolvedModel:
    """Resolve a model name (registry name, ``ViT-B/32``, ``hf-hub:org/repo``, ``local-dir:PATH`` or a JSON
    config path) and an optional ``pretrained`` (tag, weights file, or ``"none"`` for random weights) into a
    :class:`ResolvedModel`.

    A ``local-dir:`` folder with a config and no weights file is refused unless ``pretrained="none"``, or
    ``allow_random_weights`` (training from scratch, as OpenCLIP allows with a warning; the returned ``notes``
    say so)."""
    if not model_name:
        raise ClipctlError(
            "no model given: pass a name from `clipctl models list`, hf-hub:ORG/REPO or local-dir:PATH"
        )
    found = _resolve_name(model_name, cache_dir)
    if no_weights_requested(pretrained):
        found.weights = None
    elif pretrained:
        _use_pretrained(found, model_name, pretrained)
    elif model_name.startswith(LOCAL_DIR_PREFIX) and found.weights is None:
        found.notes.append(_local_dir_without_weights(model_name, allow_random_weights))

    model_cfg = found.model_cfg
    if force_quick_gelu:
        model_cfg["quick_gelu"] = True
    if force_custom_text:
        model_cfg["custom_text"] = True
    vision_cfg = model_cfg.setdefault("vision_cfg", {})
    if force_patch_dropout is not None:
        vision_cfg["patch_dropout"] = force_patch_dropout
    if force_image_size is not None:
        vision_cfg["image_size"] = force_image_size
    if force_context_length is not None:
        model_cfg.setdefault("text_cfg", {})["context_length"] = force_context_length

    check_model_cfg(model_cfg, found.name)
    preprocess = merge_preprocess(default_preprocess_cfg(model_cfg), found.preprocess)
    preprocess["size"] = vision_cfg.get("image_size", 224)
    preprocess = merge_preprocess(preprocess, force_preprocess_cfg)
    return ResolvedModel(
        name=found.name,
        model_cfg=model_cfg,
        preprocess_cfg=preprocess,
        pretrained=found.pretrained,
        pretrained_cfg=found.pretrained_cfg,
        weights=found.weights,
        notes=found.notes,
    )
