"""Pretrained tags as data: which Hub repo holds a tag's weights, and the preprocessing it was trained with.

The table is ``pretrained_tags.json``: ``{"tags": {model: {tag: entry}}}``, each entry with ``hf_hub_id``
(and ``hf_hub_filename`` when it is not the default weights file), an optional legacy ``url``, ``mean``,
``std``, ``interpolation``, ``resize_mode`` and ``quick_gelu``.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from clipctl.config.registry import normalize_model_name

TAGS_FILE = Path(__file__).parent / "pretrained_tags.json"


@cache
def _table() -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads(TAGS_FILE.read_text())["tags"]


def clean_tag(tag: str) -> str:
    return tag.lower().replace("-", "_")


def list_pretrained(as_str: bool = False) -> list[tuple[str, str]] | list[str]:
    pairs = [(model, tag) for model, tags in _table().items() for tag in tags]
    return [f"{m}:{t}" for m, t in pairs] if as_str else pairs


def list_pretrained_tags_by_model(model: str) -> list[str]:
    return list(_table().get(normalize_model_name(model), {}))


def list_pretrained_models_by_tag(tag: str) -> list[str]:
    tag = clean_tag(tag)
    return [model for model, tags in _table().items() if tag in tags]


def get_pretrained_cfg(model: str, tag: str) -> dict[str, Any]:
    """The tag's entry, or ``{}`` when the model has no such tag."""
    return copy.deepcopy(_table().get(normalize_model_name(model), {}).get(clean_tag(tag), {}))


def is_pretrained_cfg(model: str, tag: str) -> bool:
    return bool(get_pretrained_cfg(model, tag))
