"""Embedding jobs: images or captions to Parquet (or clip-retrieval's layout), resumable.

Names load on first use, so that the CLI can read :mod:`clipctl.embed.defaults` without importing torch.
"""

from __future__ import annotations

from clipctl._lazy import lazy_exports

_EXPORTS = {
    "EmbedOptions": "clipctl.embed.job",
    "EmbedSummary": "clipctl.embed.job",
    "embed_images": "clipctl.embed.job",
    "embed_texts": "clipctl.embed.job",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
