"""`clipctl embed`: image folders, list files, shards or captions to embedding files (Parquet or clip-retrieval's
layout), resumable and streaming."""

from clipctl.embed.job import EmbedSummary, embed_images, embed_texts

__all__ = ["EmbedSummary", "embed_images", "embed_texts"]
