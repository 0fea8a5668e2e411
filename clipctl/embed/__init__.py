"""Embedding jobs: images or captions to Parquet (or clip-retrieval's layout), resumable.

Names load on first use, so that the CLI can read :mod:`clipctl.embed.defaults` without importing torch.
"""

from __future__ import annotations

from clipctl._lazy import lazy_exports

_EXPORTS = {
    "clipctl.embed.job": ("EmbedOptions", "EmbedSummary", "embed_images", "embed_texts"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
