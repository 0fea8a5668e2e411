"""clipctl: one toolkit and Python library for CLIP-family image-text models.

The names below are the calls OpenCLIP users already write. They are loaded on first use so that importing
``clipctl`` (and running ``clipctl --help``) does not pay for importing torch. clipctl's timm models
(``timm.create_model("unireplknet_l")``) register when timm is imported (``clipctl.timm_registration``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "clipctl.api",
    "create_model_and_transforms": "clipctl.api",
    "create_model_from_pretrained": "clipctl.api",
    "get_tokenizer": "clipctl.api",
    "list_models": "clipctl.config.registry",
    "get_model_config": "clipctl.config.registry",
    "add_model_config": "clipctl.config.registry",
    "list_pretrained": "clipctl.config.pretrained",
    "list_pretrained_tags_by_model": "clipctl.config.pretrained",
    "list_pretrained_models_by_tag": "clipctl.config.pretrained",
    "get_pretrained_cfg": "clipctl.config.pretrained",
    "is_pretrained_cfg": "clipctl.config.pretrained",
    "load_checkpoint": "clipctl.checkpoint",
    "read_state_dict": "clipctl.checkpoint",
    "build_zero_shot_classifier": "clipctl.eval.zeroshot",
    "IMAGENET_CLASSNAMES": "clipctl.eval.zeroshot_metadata",
    "OPENAI_IMAGENET_TEMPLATES": "clipctl.eval.zeroshot_metadata",
    "SIMPLE_IMAGENET_TEMPLATES": "clipctl.eval.zeroshot_metadata",
    "SimpleTokenizer": "clipctl.tokenizer",
    "HFTokenizer": "clipctl.tokenizer",
    "tokenize": "clipctl.tokenizer",
    "decode": "clipctl.tokenizer",
    "image_transform": "clipctl.transforms",
    "image_transform_v2": "clipctl.transforms",
    "PreprocessCfg": "clipctl.transforms",
    "AugmentationCfg": "clipctl.transforms",
    "OPENAI_DATASET_MEAN": "clipctl.constants",
    "OPENAI_DATASET_STD": "clipctl.constants",
    "ClipctlError": "clipctl.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clipctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def _install_timm_registration() -> None:
    from clipctl.timm_registration import install

    install()


_install_timm_registration()
