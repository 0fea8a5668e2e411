"""Text, image and vector queries against one index: the Python face of `clipctl search`.

from clipctl.search import search
for hit in search("index/", text="a red circle", k=5):
    print(hit.rank, f"{hit.score:.3f}", hit.file or hit.key)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from clipctl.errors import ClipctlError
from clipctl.search.index import Hit, SearchIndex
from clipctl.search.query import QueryEncoder


class Searcher:
    """An index and, loaded on the first text or image query, the model that embeds queries for it."""

    def __init__(
        self,
        index: SearchIndex | str | os.PathLike,
        *,
        device: str = "cpu",
        model: str | None = None,
        pretrained: str | None = None,
        precision: str | None = None,
    ):
        self.index = index if isinstance(index, SearchIndex) else SearchIndex(index)
        self._encoder_options = dict(device=device, model=model, pretrained=pretrained, precision=precision)
        self._encoder: QueryEncoder | None = None

    @property
    def encoder(self) -> QueryEncoder:
        if self._encoder is None:
            self._encoder = QueryEncoder(self.index.manifest, **self._encoder_options)
        return self._encoder

    def embed(self, *, text: str | None = None, image: Any = None) -> np.ndarray:
        """One query's vector: a text, or an image (PIL image or path)."""
        if (text is None) == (image is None):
            raise ClipctlError("give one query: a text or an image")
        if text is not None:
            if not text.strip():
                raise ClipctlError("the text query is empty")
            return self.encoder.texts([text])[0]
        return self.encoder.images([image])[0]

    def search(
        self,
        *,
        text: str | None = None,
        image: Any = None,
        vector: np.ndarray | None = None,
        row: int | None = None,
        k: int = 20,
        **options: Any,
    ) -> list[Hit]:
        """The ``k`` best rows for a text, an image, a vector, or an indexed row ("more like this")."""
        given = [q for q in (text, image, vector, row) if q is not None]
        if len(given) != 1:
            raise ClipctlError("give exactly one query: text, image, vector or row")
        if vector is None:
            vector = self.index.vector(row) if row is not None else self.embed(text=text, image=image)
        return self.index.search(vector, k, **options)[0]


def search(
    index_dir: str | os.PathLike,
    *,
    text: str | None = None,
    image: Any = None,
    vector: np.ndarray | None = None,
    k: int = 20,
    device: str = "cpu",
    **options: Any,
) -> list[Hit]:
    """One query against ``index_dir``: what `clipctl search` prints, as :class:`Hit` objects."""
    return Searcher(index_dir, device=device).search(text=text, image=image, vector=vector, k=k, **options)
