"""Checks of an architecture config (OpenCLIP's schema) before any module is built.

A size of zero, a negative or fractional size, or a width that its heads do not divide would otherwise surface
from deep inside torch ("Trying to create tensor with negative dimension", "embed_dim must be divisible by
num_heads"). Only keys present in the config are checked; absent ones take the builders' defaults. Towers
that another library builds (a timm trunk, a Hugging Face text model) are checked only for what clipctl
itself uses (image size, context length).
"""

from __future__ import annotations

from typing import Any

from clipctl.errors import ClipctlError

# tower -> keys that must be integers >= 1 (>= 0 for layer counts)
_POSITIVE = {
    "": ("embed_dim",),
    "vision_cfg": ("width", "head_width", "patch_size", "attn_pooler_heads", "n_queries"),
    "text_cfg": ("context_length", "vocab_size", "width", "heads"),
    "multimodal_cfg": ("context_length", "vocab_size", "width", "heads", "dim_head", "attn_pooler_heads"),
}
_LAYER_COUNTS = {"vision_cfg": ("layers",), "text_cfg": ("layers",), "multimodal_cfg": ("layers",)}
_RATIOS = {"vision_cfg": ("mlp_ratio",), "text_cfg": ("mlp_ratio",), "multimodal_cfg": ("mlp_ratio",)}
# Keys the towers built by other libraries ignore.
_EXTERNAL_TOWER_KEEPS = {"vision_cfg": ("image_size",), "text_cfg": ("context_length",)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(where: str, key: str, what: str, value: Any) -> None:
    raise ClipctlError(f"model config {where}: {key} must be {what} (got {value!r})")


def _check_ints(where: str, tower: str, cfg: dict[str, Any], keys: tuple[str, ...], minimum: int) -> None:
    for key in keys:
        if key not in cfg or cfg[key] is None:
            continue
        value = cfg[key]
        per_stage = tower == "vision_cfg" and key == "layers"  # a ResNet lists its blocks per stage
        values = value if per_stage and isinstance(value, (list, tuple)) else [value]
        if not values or not all(_is_int(v) and v >= minimum for v in values):
            what = "a positive integer" if minimum == 1 else "a non-negative integer"
            _fail(
                where,
                f"{tower}.{key}" if tower else key,
                what + (" or a list of them" if per_stage else ""),
                value,
            )


def _check_ratios(where: str, tower: str, cfg: dict[str, Any]) -> None:
    for key in _RATIOS.get(tower, ()):
        value = cfg.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            _fail(where, f"{tower}.{key}", "a positive number", value)


def _check_image_size(where: str, vision: dict[str, Any]) -> None:
    size = vision.get("image_size")
    sizes = list(size) if isinstance(size, (list, tuple)) else [size]
    if size is not None and not (len(sizes) in (1, 2) and all(_is_int(s) and s >= 1 for s in sizes)):
        _fail(where, "vision_cfg.image_size", "a positive integer or two of them", size)
    patch = vision.get("patch_size")
    if size is not None and _is_int(patch) and patch > min(sizes):
        _fail(where, "vision_cfg.patch_size", f"at most the image size {min(sizes)}", patch)


def _check_heads(where: str, tower: str, cfg: dict[str, Any]) -> None:
    width = cfg.get("width")
    if not _is_int(width):
        return
    if tower == "vision_cfg":
        if "head_width" not in cfg or isinstance(
            cfg.get("layers"), (list, tuple)
        ):  # ResNet, or default heads
            return
        heads = width // cfg["head_width"]
        if heads < 1 or width % heads:
            _fail(
                where, "vision_cfg.width", f"a multiple of its heads (width // head_width = {heads})", width
            )
    elif _is_int(cfg.get("heads")) and width % cfg["heads"]:
        _fail(where, f"{tower}.width", f"divisible by {tower}.heads = {cfg['heads']}", width)


def check_model_cfg(model_cfg: dict[str, Any], where: str) -> None:
    """Raise ClipctlError (one line naming ``where`` and the key) on the first size no model could have."""
    _check_ints(where, "", model_cfg, _POSITIVE[""], 1)
    for tower in ("vision_cfg", "text_cfg", "multimodal_cfg"):
        cfg = model_cfg.get(tower)
        if cfg is None:
            continue
        if not isinstance(cfg, dict):
            _fail(where, tower, "a mapping", cfg)
        external = (tower == "vision_cfg" and cfg.get("timm_model_name")) or (
            tower == "text_cfg" and cfg.get("hf_model_name")
        )
        keep = _EXTERNAL_TOWER_KEEPS.get(tower, ()) if external else None
        positive = tuple(k for k in _POSITIVE[tower] if keep is None or k in keep)
        _check_ints(where, tower, cfg, positive, 1)
        if external:
            if tower == "vision_cfg":
                _check_image_size(where, cfg)
            continue
        _check_ints(where, tower, cfg, _LAYER_COUNTS[tower], 0)
        _check_ratios(where, tower, cfg)
        _check_heads(where, tower, cfg)
        if tower == "vision_cfg":
            _check_image_size(where, cfg)
