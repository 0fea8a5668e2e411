"""Configuration layer: the architecture registry, pretrained tags, recipes and the one resolver."""

from clipctl.config.pretrained import (
    get_pretrained_cfg,
    is_pretrained_cfg,
    list_pretrained,
    list_pretrained_models_by_tag,
    list_pretrained_tags_by_model,
)
from clipctl.config.registry import add_model_config, get_model_config, list_models

__all__ = [
    "add_model_config",
    "get_model_config",
    "get_pretrained_cfg",
    "is_pretrained_cfg",
    "list_models",
    "list_pretrained",
    "list_pretrained_models_by_tag",
    "list_pretrained_tags_by_model",
]
