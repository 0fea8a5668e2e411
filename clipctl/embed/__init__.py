"""Embedding jobs: images or captions to Parquet (or clip-retrieval's layout), resumable.

Names load on first use, so that the CLI can read :mod:`clipctl.embed.defaults` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EmbedOptions": "clipctl.embed.job",
    "EmbedSummary": "clipctl.embed.job",
    "embed_images": "clipctl.embed.job",
    "embed_texts": "clipctl.embed.job",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'clipctl.embed' has no attribute {name!r}")
