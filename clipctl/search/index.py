"""An index opened for searching: vectors, row metadata and the faiss index all memory-mapped, so opening is
instant, several processes share one copy in the page cache, and an index larger than RAM still works (the
pages a search touches are read from disk)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipctl.errors import ClipctlError
from clipctl.search import layout
from clipctl.search.deps import require
from clipctl.search.knn import exact_search, ivf_search, normalize_rows, trim
from clipctl.search.planner import IndexPlan


@dataclass
class Hit:
    rank: int  # from 1
    id: int  # row id in the index
    score: float  # cosine similarity
    key: Any  # the row's path, shard key or caption line, as the embeddings file names it
    caption: str | None = None
    file: str | None = None  # the image file, resolved when the index was built
    fields: dict[str, Any] = field(default_factory=dict)  # the row's other metadata columns

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchIndex:
    """Search one index folder by vectors; see :class:`clipctl.search.Searcher` for text and image queries."""

    def __init__(self, folder: str | os.PathLike, *, mmap: bool = True):
        require(what="searching an index")
        self.folder = Path(folder).expanduser()
        self.manifest = layout.read_manifest(self.folder)
        self.dim = int(self.manifest["dim"])
        self.count = int(self.manifest["count"])
        self.plan = IndexPlan(**self.manifest["plan"])
        self.vectors = layout.open_vectors(self.folder, self.count, self.dim)
        self.rows = layout.read_rows(self.folder, self.manifest["row_files"])
        self.faiss_index = None
        if self.plan.kind == "approximate":
            self.faiss_index = layout.read_faiss(self.folder, self.manifest["faiss_file"], mmap=mmap)
            if self.faiss_index.ntotal != self.count:
                raise ClipctlError(
                    f"{self.folder}: the faiss index holds {self.faiss_index.ntotal} vectors, the manifest "
                    f"{self.count}; rebuild the index"
                )

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    @property
    def modality(self) -> str:
        return self.manifest.get("modality") or "image"

    def describe(self) -> dict[str, Any]:
        keys = ("model", "pretrained", "precision", "modality", "dim", "count", "nprobe", "expected_recall")
        return {"name": self.name, **{k: self.manifest.get(k) for k in keys}, "kind": self.plan.kind}

    def check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ClipctlError(f"a query vector has {queries.shape[-1]} values; the index holds {self.dim}")
        if not np.isfinite(queries).all():
            raise ClipctlError("a query vector holds NaN or infinite values")
        if not np.linalg.norm(queries, axis=1).all():
            raise ClipctlError("a query vector is all zeros")
        return normalize_rows(queries)

    def search_ids(
        self, queries: np.ndarray, k: int, *, nprobe: int | None = None, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of the ``k`` best rows per query, best first; ``-1`` ids pad short lists."""
        if k < 1:
            raise ClipctlError(f"k must be at least 1, got {k}")
        queries = self.check_queries(queries)
        if self.faiss_index is None or exact:
            return exact_search(self.vectors, queries, k)
        nprobe = self.manifest["nprobe"] if nprobe is None else nprobe
        nprobe = max(1, min(int(nprobe), self.plan.nlist))
        return ivf_search(
            self.faiss_index, self.vectors, queries, k, nprobe, self.plan.candidates(k, self.count)
        )

    def search(self, queries: np.ndarray, k: int = 20, **options: Any) -> list[list[Hit]]:
        """The ``k`` best rows for each query (a vector or a (queries, dim) array) with their metadata."""
        scores, ids = self.search_ids(queries, k, **options)
        return [self.hits(s, i) for s, i in trim(scores, ids)]

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Hit]:
        records = self.records(ids)
        return [
            self._hit(rank, int(row_id), float(score), record)
            for rank, (row_id, score, record) in enumerate(zip(ids, scores, records, strict=True), start=1)
        ]

    def records(self, ids: Any) -> list[dict[str, Any]]:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return []
        return self.rows.take(ids).to_pylist()

    def _hit(self, rank: int, row_id: int, score: float, record: dict[str, Any]) -> Hit:
        key_column = self.manifest.get("key_column")
        caption_column = self.manifest.get("caption_column")
        file_column = self.manifest.get("file_column")
        fields = {k: v for k, v in record.items() if k not in (key_column, caption_column, file_column)}
        return Hit(
            rank=rank,
            id=row_id,
            score=score,
            key=record.get(key_column) if key_column else row_id,
            caption=record.get(caption_column) if caption_column else None,
            file=record.get(file_column) if file_column else None,
            fields=fields,
        )

    def vector(self, row_id: int) -> np.ndarray:
        if not 0 <= row_id < self.count:
            raise ClipctlError(f"row {row_id} is not in the index (it holds rows 0 to {self.count - 1})")
        return np.asarray(self.vectors[row_id], dtype=np.float32)

    def file_of(self, row_id: int) -> str | None:
        """The image file recorded for ``row_id`` (None for unknown rows and rows without one)."""
        file_column = self.manifest.get("file_column")
        if not file_column or not 0 <= row_id < self.count or file_column not in self.rows.column_names:
            return None
        return self.rows.column(file_column)[row_id].as_py()
