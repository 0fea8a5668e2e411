"""Image features for linear probes, computed once and kept on disk.

A cache file holds the L2-normalised image features of one dataset in one *feature space*: the resolved model
(name and architecture config), the identity of its weights file (path, size, modification time), the
preprocessing and the precision. All of these, plus the dataset's identity, go into the file's name (a hash),
so another model, other weights or another transform never read stale features.

Inside, rows are keyed by image (see ``labelled_data``); features are written in chunks as they are computed
(``clipctl.embed``'s Parquet writer: part files renamed into place, merged at the end), so an interrupted
extraction keeps what it finished and the next run encodes only the rest. A run that finds every image in the
cache does not load the model at all.

Random weights (``--pretrained none``) are never cached: two runs would not have the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from clipctl.eval.labelled_data import LabelledSource

CACHE_FORMAT = 1
CHUNK_ROWS = 4096
CHUNK_SECONDS = 60.0


def default_cache_dir() -> Path:
    """``$CLIPCTL_CACHE_DIR/features``, else ``$XDG_CACHE_HOME/clipctl/features`` (``~/.cache/clipctl/features``)."""
    root = os.environ.get("CLIPCTL_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "features"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "clipctl" / "features"


def _file_identity(path: str | os.PathLike) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def feature_space(model: str, pretrained: str | None, precision: str) -> dict[str, Any] | None:
    """What the features depend on, or None for random weights (not reproducible, so never cached)."""
    from clipctl.api import weights_path
    from clipctl.config.resolver import resolve_model

    resolved = resolve_model(model, pretrained)
    weights = weights_path(resolved)
    if weights is None:
        return None
    return {
        "format": CACHE_FORMAT,
        "model": resolved.name,
        "model_cfg": resolved.model_cfg,
        "weights": _file_identity(weights),
        "preprocess": resolved.preprocess_cfg,
        "precision": precision,
        "normalize": True,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "x"


def cache_file(cache_dir: str | os.PathLike, space: dict[str, Any], source: LabelledSource) -> Path:
    key = json.dumps({"space": space, "data": source.identity}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return Path(cache_dir) / _slug(space["model"]) / f"{_slug(source.name)}-{digest}.parquet"


class FeatureStore:
    """One dataset's cached rows: ``key -> (feature, label)``; ``path=None`` keeps them in memory only."""

    def __init__(self, path: Path | None, settings: dict[str, str]):
        self.path = path
        self.memory: dict[str, tuple[np.ndarray, int]] = {}
        self.parquet: Any = None
        if path is not None:
            import pyarrow as pa

            from clipctl.embed.writer import ParquetStore

            path.parent.mkdir(parents=True, exist_ok=True)
            self.parquet = ParquetStore(
                path,
                settings,
                "key",
                pa.string(),
                {"label": pa.int64()},
                chunk_rows=CHUNK_ROWS,
                chunk_seconds=CHUNK_SECONDS,
            )

    def done_keys(self) -> set[str]:
        return self.parquet.done_keys() if self.parquet is not None else set(self.memory)

    def add(self, keys: list[str], features: np.ndarray, labels: list[int]) -> None:
        if self.parquet is not None:
            self.parquet.add(keys, features, {"label": labels})
        else:
            self.memory.update({k: (f, y) for k, f, y in zip(keys, features, labels, strict=True)})

    def flush(self) -> None:
        if self.parquet is not None:
            self.parquet.flush()

    def _meta_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".json")

    def read_meta(self) -> dict[str, Any]:
        """``complete`` (every sample of a streamed dataset was seen) and ``unreadable`` (key -> reason)."""
        meta: dict[str, Any] = {"complete": False, "unreadable": {}}
        path = self._meta_path()
        if path is not None and path.is_file():
            try:
                found = json.loads(path.read_text(encoding="utf-8"))
                meta.update({k: found[k] for k in meta if k in found})
            except (OSError, ValueError):
                pass  # a damaged side file only costs a re-check of the unreadable images
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        path = self._meta_path()
        if path is not None:
            from clipctl.fileio import write_json_atomic

            write_json_atomic(path, meta)

    def rows(self) -> dict[str, tuple[np.ndarray, int]]:
        """Every stored row (merging an interrupted run's part files first)."""
        if self.parquet is None:
            return self.memory
        import pyarrow.parquet as pq

        if self.parquet.finalize() == 0:
            return {}
        table = pq.read_table(self.path, columns=["key", "label", "embedding"])
        dim = table.schema.field("embedding").type.list_size
        flat = table.column("embedding").combine_chunks().flatten().to_numpy()
        matrix = flat.reshape(-1, dim)
        labels = table.column("label").to_pylist()
        return {key: (matrix[i], labels[i]) for i, key in enumerate(table.column("key").to_pylist())}
