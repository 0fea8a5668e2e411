"""The Python API OpenCLIP users already write: ``create_model``, ``create_model_and_transforms``,
``create_model_from_pretrained`` and ``get_tokenizer``.

Each call is resolve (``clipctl.config.resolver``) -> build (``clipctl.models``) -> fetch weights
(``clipctl.download``) -> load strictly (``clipctl.checkpoint``) -> cast and move. Nothing here parses names,
reads JSON or knows about towers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from clipctl.checkpoint import load_checkpoint
from clipctl.config.resolver import LOCAL_DIR_PREFIX, ResolvedModel, merge_preprocess, resolve_model
from clipctl.errors import ClipctlError

if TYPE_CHECKING:
    from clipctl.transforms import AugmentationCfg

logger = logging.getLogger("clipctl")
# an image preprocessing pipeline: PIL image in, tensor out
Transform = Callable[[Any], torch.Tensor]


def weights_path(resolved: ResolvedModel, cache_dir: str | None = None) -> Path | None:
    """The local file of a resolved model's weights (fetched from the Hub cache when they live there)."""
    source = resolved.weights
    if source is None:
        return None
    if source.path is not None:
        return source.path
    from clipctl.download import fetch_hub_file

    return fetch_hub_file(
        source.hf_repo_id, source.hf_filenames, revision=source.revision, cache_dir=cache_dir
    )


def _apply_precision(model: nn.Module, precision: str) -> nn.Module:
    from clipctl.models.precision import convert_weights_to_lp

    if precision in ("fp16", "bf16"):
        convert_weights_to_lp(model, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    elif precision in ("pure_fp16", "pure_bf16"):
        model.to(dtype=torch.bfloat16 if precision == "pure_bf16" else torch.float16)
    return model


def create_model(
    model_name: str,
    pretrained: str | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    jit: bool = False,
    force_quick_gelu: bool = False,
    force_custom_text: bool = False,
    force_patch_dropout: float | None = None,
    force_image_size: int | tuple[int, int] | None = None,
    force_preprocess_cfg: dict[str, Any] | None = None,
    force_context_length: int | None = None,
    pretrained_image: bool = False,
    pretrained_text: bool = True,
    cache_dir: str | None = None,
    output_dict: bool | None = None,
    require_pretrained: bool = False,
    weights_only: bool = True,
    reparameterize: bool = False,
    allow_random_weights: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """Build a model by name and load its weights strictly (names: see the README; ``pretrained="none"``:
    random weights). ``allow_random_weights``: a ``local-dir:`` folder without weights is not refused."""
    from clipctl.models import build_model_from_config
    from clipctl.runtime import check_precision, get_cast_dtype

    check_precision(precision)
    if jit:
        raise ClipctlError("jit=True (TorchScript) is not supported; use torch.compile(model) instead")
    if isinstance(force_image_size, (list, tuple)) and len(force_image_size) == 1:
        force_image_size = force_image_size[0]
    resolved = resolve_model(
        model_name,
        pretrained,
        allow_random_weights=allow_random_weights,
        cache_dir=cache_dir,
        force_quick_gelu=force_quick_gelu,
        force_custom_text=force_custom_text,
        force_patch_dropout=force_patch_dropout,
        force_image_size=force_image_size,
        force_context_length=force_context_length,
        force_preprocess_cfg=force_preprocess_cfg,
    )
    for note in resolved.notes:
        logger.info(note)
    if require_pretrained and resolved.weights is None:
        raise ClipctlError(
            f"{model_name} needs pretrained weights: pass a tag from `clipctl models show {resolved.name}` or a file"
        )

    model_cfg = resolved.model_cfg
    if pretrained_image:
        model_cfg["vision_cfg"]["timm_model_pretrained"] = True
    if "hf_model_name" in model_cfg.get("text_cfg", {}):
        # A full checkpoint replaces the text tower's base weights, so don't fetch them.
        model_cfg["text_cfg"]["hf_model_pretrained"] = pretrained_text and resolved.weights is None
    model_kwargs.setdefault("cast_dtype", get_cast_dtype(precision))

    device = torch.device(device)
    if device.type == "meta":
        with torch.device("meta"):
            model = build_model_from_config(model_cfg, output_dict=output_dict, **model_kwargs)
    else:
        model = build_model_from_config(model_cfg, output_dict=output_dict, **model_kwargs)
        weights_file = weights_path(resolved, cache_dir)
        if weights_file is not None:
            load_checkpoint(model, weights_file, strict=True, weights_only=weights_only)
        model.to(device=device)
    if reparameterize:  # fuse in float32, before any cast, so the merged kernels lose nothing
        from clipctl.models.unireplknet import reparameterize_model

        reparameterize_model(model)
    _apply_precision(model, precision)
    _attach_origin(model, resolved, force_preprocess_cfg)
    return model


def _attach_origin(
    model: nn.Module, resolved: ResolvedModel, force_preprocess_cfg: dict[str, Any] | None
) -> None:
    """What the transforms and writers read back from a model: its preprocessing, name and weights tag."""
    preprocess = dict(resolved.preprocess_cfg)
    image_size = getattr(model.visual, "image_size", None)
    if image_size is not None:
        preprocess["size"] = image_size
    model.visual.preprocess_cfg = merge_preprocess(preprocess, force_preprocess_cfg)
    model.clipctl_model_name = resolved.name
    model.clipctl_pretrained = resolved.pretrained


def _preprocess_overrides(image_mean, image_std, image_interpolation, image_resize_mode) -> dict[str, Any]:
    return {
        "mean": image_mean,
        "std": image_std,
        "interpolation": image_interpolation,
        "resize_mode": image_resize_mode,
    }


def _transforms_for(
    model: nn.Module, aug_cfg: Mapping[str, Any] | AugmentationCfg | None = None
) -> tuple[Transform, Transform]:
    from clipctl.transforms import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    cfg = PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), model.visual.preprocess_cfg))
    return image_transform_v2(cfg, is_train=True, aug_cfg=aug_cfg), image_transform_v2(cfg, is_train=False)


def create_model_and_transforms(
    model_name: str,
    pretrained: str | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    image_interpolation: str | None = None,
    image_resize_mode: str | None = None,
    aug_cfg: Mapping[str, Any] | AugmentationCfg | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, Transform, Transform]:
    """``(model, preprocess_train, preprocess_val)``: transforms follow the pretrained tag's preprocessing."""
    overrides = _preprocess_overrides(image_mean, image_std, image_interpolation, image_resize_mode)
    model = create_model(
        model_name, pretrained, precision=precision, device=device, force_preprocess_cfg=overrides, **kwargs
    )
    preprocess_train, preprocess_val = _transforms_for(model, aug_cfg)
    return model, preprocess_train, preprocess_val


def create_model_from_pretrained(
    model_name: str,
    pretrained: str | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    image_interpolation: str | None = None,
    image_resize_mode: str | None = None,
    return_transform: bool = True,
    **kwargs: Any,
) -> nn.Module | tuple[nn.Module, Transform]:
    """Like OpenCLIP's: fails unless full weights load. Returns ``(model, preprocess_val)`` or the model."""
    overrides = _preprocess_overrides(image_mean, image_std, image_interpolation, image_resize_mode)
    model = create_model(
        model_name,
        pretrained,
        precision=precision,
        device=device,
        force_preprocess_cfg=overrides,
        require_pretrained=True,
        **kwargs,
    )
    if not return_transform:
        return model
    return model, _transforms_for(model)[1]


def get_tokenizer(
    model_name: str = "", context_length: int | None = None, cache_dir: str | None = None, **kwargs: Any
):
    """The tokenizer a model was trained with. Unlike OpenCLIP, an unknown name is an error, not a silent default."""
    from clipctl.tokenizer import SimpleTokenizer, build_tokenizer

    if not model_name:
        return SimpleTokenizer(context_length=context_length or 77, **kwargs)
    resolved = resolve_model(model_name, cache_dir=cache_dir, allow_random_weights=True)  # only the config
    text_cfg = resolved.model_cfg.get("text_cfg", {})
    source = None
    if resolved.name.startswith(LOCAL_DIR_PREFIX) and text_cfg.get("hf_tokenizer_name"):
        folder = Path(resolved.name[len(LOCAL_DIR_PREFIX) :])
        # push-to-hub saves the HF tokenizer beside the weights; prefer it to a Hub lookup.
        if (folder / "tokenizer_config.json").is_file():
            source = folder
    return build_tokenizer(
        text_cfg, context_length=context_length, tokenizer_source=source, cache_dir=cache_dir, **kwargs
    )
