"""clipctl: one toolkit and Python library for CLIP-family image-text models.

The names below are the calls OpenCLIP users already write. They are loaded on first use so that importing
``clipctl`` (and running ``clipctl --help``) does not pay for importing torch. clipctl's timm models
(``timm.create_model("unireplknet_l")``) register when timm is imported (``clipctl.timm_registration``).
"""

from __future__ import annotations

from clipctl._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "clipctl.api": (
        "create_model",
        "create_model_and_transforms",
        "create_model_from_pretrained",
        "get_tokenizer",
    ),
    "clipctl.config.registry": ("list_models", "get_model_config", "add_model_config"),
    "clipctl.config.pretrained": (
        "list_pretrained",
        "list_pretrained_tags_by_model",
        "list_pretrained_models_by_tag",
        "get_pretrained_cfg",
        "is_pretrained_cfg",
    ),
    "clipctl.checkpoint": ("load_checkpoint", "read_state_dict"),
    "clipctl.eval.zeroshot": ("build_zero_shot_classifier",),
    "clipctl.eval.zeroshot_metadata": (
        "IMAGENET_CLASSNAMES",
        "OPENAI_IMAGENET_TEMPLATES",
        "SIMPLE_IMAGENET_TEMPLATES",
    ),
    "clipctl.tokenizer": ("SimpleTokenizer", "HFTokenizer", "tokenize", "decode"),
    "clipctl.transforms": ("image_transform", "image_transform_v2", "PreprocessCfg", "AugmentationCfg"),
    "clipctl.constants": ("OPENAI_DATASET_MEAN", "OPENAI_DATASET_STD"),
    "clipctl.errors": ("ClipctlError",),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def _install_timm_registration() -> None:
    from clipctl.timm_registration import install

    install()


_install_timm_registration()
