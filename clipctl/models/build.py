"""Build a model from an OpenCLIP-schema config dict: tower builders and the class choice."""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

import torch
from torch import nn

from clipctl.errors import ClipctlError
from clipctl.models.layers import LayerNorm, LayerNormFp32, QuickGELU
from clipctl.models.transformer import CUSTOM_BLOCK_FLAGS, reject_custom_block

# Options of the transformer blocks, the same keys in both native towers' configs.
BLOCK_DEFAULTS: dict[str, Any] = {
    "act_kwargs": None,
    "norm_kwargs": None,
    "block_type": None,
    **dict.fromkeys(CUSTOM_BLOCK_FLAGS, False),
}

VISION_DEFAULTS: dict[str, Any] = {
    "layers": 12,
    "width": 768,
    "head_width": 64,
    "mlp_ratio": 4.0,
    "patch_size": 16,
    "image_size": 224,
    "ls_init_value": None,
    "patch_dropout": 0.0,
    "attentional_pool": False,
    "attn_pooler_queries": 256,
    "attn_pooler_heads": 8,
    "no_ln_pre": False,
    "pos_embed_type": "learnable",
    "final_ln_after_pool": False,
    "pool_type": "tok",
    "output_tokens": False,
    **BLOCK_DEFAULTS,
    "timm_model_name": None,
    "timm_model_pretrained": False,
    "timm_pool": "avg",
    "timm_proj": "linear",
    "timm_proj_bias": False,
    "timm_drop": 0.0,
    "timm_drop_path": None,
}

TEXT_DEFAULTS: dict[str, Any] = {
    "context_length": 77,
    "vocab_size": 49408,
    "hf_tokenizer_name": None,
    "tokenizer_mode": None,
    "tokenizer_kwargs": None,
    "width": 512,
    "heads": 8,
    "layers": 12,
    "mlp_ratio": 4.0,
    "ls_init_value": None,
    "embed_cls": False,
    "pad_id": 0,
    "eos_id": 2,
    "no_causal_mask": False,
    "final_ln_after_pool": False,
    "pool_type": "argmax",
    "proj_bias": False,
    "proj_type": "linear",
    "output_tokens": False,
    **BLOCK_DEFAULTS,
    "hf_model_name": None,
    "hf_model_pretrained": True,
    "hf_proj_type": "mlp",
    "hf_pooler_type": "mean_pooler",
}

MULTIMODAL_DEFAULTS: dict[str, Any] = {
    **TEXT_DEFAULTS,
    "mlp_ratio": 4,
    "dim_head": 64,
    "heads": 8,
    "n_queries": 256,
    "attn_pooler_heads": 8,
}

MODEL_KWARGS = ("init_logit_scale", "init_logit_bias", "nonscalar_logit_scale", "output_dict")


def _with_defaults(cfg: dict | None, defaults: dict[str, Any], what: str) -> dict[str, Any]:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ClipctlError(f"unknown {what} key(s) in model config: {', '.join(unknown)}")
    return {**defaults, **cfg}


def _norm_and_act(cfg: dict[str, Any], quick_gelu: bool, cast_dtype: torch.dtype | None) -> tuple[Any, Any]:
    act_layer: Any = QuickGELU if quick_gelu else nn.GELU
    norm_layer: Any = LayerNormFp32 if cast_dtype in (torch.float16, torch.bfloat16) else LayerNorm
    if cfg.get("norm_kwargs"):
        norm_layer = partial(norm_layer, **cfg["norm_kwargs"])
    if cfg.get("act_kwargs") is not None:
        act_layer = partial(act_layer, **cfg["act_kwargs"])
    return norm_layer, act_layer


# config keys passed under the same name to the native towers
_VIT_KEYS = (
    "image_size",
    "patch_size",
    "width",
    "layers",
    "mlp_ratio",
    "ls_init_value",
    "attentional_pool",
    "attn_pooler_queries",
    "attn_pooler_heads",
    "patch_dropout",
    "no_ln_pre",
    "pos_embed_type",
    "pool_type",
    "final_ln_after_pool",
    "output_tokens",
)
_TEXT_TRANSFORMER_KEYS = (
    "context_length",
    "vocab_size",
    "width",
    "heads",
    "layers",
    "mlp_ratio",
    "ls_init_value",
    "embed_cls",
    "no_causal_mask",
    "pad_id",
    "eos_id",
    "pool_type",
    "proj_type",
    "proj_bias",
    "output_tokens",
)


def _pick(cfg: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: cfg[key] for key in keys}


def build_vision_tower(
    embed_dim: int, vision_cfg: dict, quick_gelu: bool = False, cast_dtype: torch.dtype | None = None
) -> nn.Module:
    cfg = _with_defaults(vision_cfg, VISION_DEFAULTS, "vision_cfg")
    if cfg["timm_model_name"]:
        return _timm_tower(cfg, embed_dim)
    if isinstance(cfg["layers"], (tuple, list)):
        from clipctl.models.resnet import ModifiedResNet

        return ModifiedResNet(
            layers=tuple(cfg["layers"]),
            output_dim=embed_dim,
            heads=cfg["width"] * 32 // cfg["head_width"],
            image_size=cfg["image_size"],
            width=cfg["width"],
        )
    from clipctl.models.vit import VisionTransformer

    reject_custom_block(cfg, "vision_cfg")
    norm_layer, act_layer = _norm_and_act(cfg, quick_gelu, cast_dtype)
    heads = cfg["width"] // cfg["head_width"]
    return VisionTransformer(
        heads=heads, output_dim=embed_dim, act_layer=act_layer, norm_layer=norm_layer, **_pick(cfg, _VIT_KEYS)
    )


def _timm_tower(cfg: dict[str, Any], embed_dim: int) -> nn.Module:
    from clipctl.models.timm_tower import TimmModel

    return TimmModel(
        cfg["timm_model_name"],
        embed_dim=embed_dim,
        image_size=cfg["image_size"],
        pool=cfg["timm_pool"],
        proj=cfg["timm_proj"],
        proj_bias=cfg["timm_proj_bias"],
        drop=cfg["timm_drop"],
        drop_path=cfg["timm_drop_path"],
        patch_drop=cfg["patch_dropout"] if cfg["patch_dropout"] > 0 else None,
        pretrained=cfg["timm_model_pretrained"],
    )


def build_text_tower(
    embed_dim: int, text_cfg: dict, quick_gelu: bool = False, cast_dtype: torch.dtype | None = None
) -> nn.Module:
    cfg = _with_defaults(text_cfg, TEXT_DEFAULTS, "text_cfg")
    if cfg["hf_model_name"]:
        from clipctl.models.hf_text import HFTextEncoder

        return HFTextEncoder(
            cfg["hf_model_name"],
            output_dim=embed_dim,
            proj_type=cfg["hf_proj_type"],
            pooler_type=cfg["hf_pooler_type"],
            pretrained=cfg["hf_model_pretrained"],
            output_tokens=cfg["output_tokens"],
        )
    from clipctl.models.text import TextTransformer

    reject_custom_block(cfg, "text_cfg")
    norm_layer, act_layer = _norm_and_act(cfg, quick_gelu, cast_dtype)
    return TextTransformer(
        output_dim=embed_dim, act_layer=act_layer, norm_layer=norm_layer, **_pick(cfg, _TEXT_TRANSFORMER_KEYS)
    )


def multimodal_cfg_with_defaults(multimodal_cfg: dict) -> dict[str, Any]:
    return _with_defaults(multimodal_cfg, MULTIMODAL_DEFAULTS, "multimodal_cfg")


def build_model_from_config(
    model_cfg: dict,
    *,
    quick_gelu: bool = False,
    cast_dtype: torch.dtype | None = None,
    output_dict: bool | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """Build CLIP, CustomTextCLIP or CoCa from an OpenCLIP-schema config (random init).

    The class is chosen as OpenCLIP does: CoCa when there is a `multimodal_cfg` and the text tower is custom
    (`custom_text` or an HF text model), CustomTextCLIP for a custom text tower, CLIP otherwise.
    `model_kwargs` override top-level config keys (e.g. `init_logit_bias`).
    """
    from clipctl.models.clip import CLIP, CustomTextCLIP
    from clipctl.models.coca import CoCa

    cfg = copy.deepcopy(model_cfg)
    cfg.update(model_kwargs)
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in cfg:
            raise ClipctlError(f"model config is missing {key!r}")
    quick_gelu = bool(cfg.pop("quick_gelu", False)) or quick_gelu
    custom_text = bool(cfg.pop("custom_text", False))
    multimodal_cfg = cfg.pop("multimodal_cfg", None)
    has_hf_text = bool((cfg["text_cfg"] or {}).get("hf_model_name"))
    # keys OpenCLIP's factory consumes before construction
    for key in ("hf_tokenizer_name",):
        cfg.pop(key, None)
    allowed = {"embed_dim", "vision_cfg", "text_cfg", *MODEL_KWARGS}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ClipctlError(f"unknown model config key(s): {', '.join(unknown)}")
    want_dict = cfg.pop("output_dict", None) if output_dict is None else output_dict
    cfg.pop("output_dict", None)

    if multimodal_cfg is not None and (custom_text or has_hf_text):
        model: nn.Module = CoCa(
            multimodal_cfg=multimodal_cfg, quick_gelu=quick_gelu, cast_dtype=cast_dtype, **cfg
        )
    elif custom_text or has_hf_text:
        model = CustomTextCLIP(
            quick_gelu=quick_gelu, cast_dtype=cast_dtype, output_dict=bool(want_dict), **cfg
        )
    else:
        model = CLIP(quick_gelu=quick_gelu, cast_dtype=cast_dtype, output_dict=bool(want_dict), **cfg)
    if cast_dtype is not None:
        from clipctl.models.precision import convert_weights_to_lp

        convert_weights_to_lp(model, cast_dtype)
    return model
