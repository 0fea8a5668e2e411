"""What `clipctl serve` does with a request once it is parsed, independent of the web framework: the indexes
it serves (by name), their query encoders (one model shared by indexes made with the same one), the caps, and
the JSON it answers. A bad query raises :class:`RequestError` with a status and a one-line message."""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from clipctl.errors import ClipctlError
from clipctl.search.index import Hit, SearchIndex
from clipctl.search.query import QueryEncoder, choose_weights, load_image

DEFAULT_K = 20


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ServeOptions:
    max_k: int = 1000
    max_upload_bytes: int = 10 << 20
    max_text_chars: int = 1000
    thumbnail_size: int = 256
    allow_origins: tuple[str, ...] = ()
    device: str = "cpu"
    nprobe: int | None = None  # approximate indexes: lists to visit (default: what the build tuned)


@dataclass(frozen=True)
class Query:
    kind: str  # "text" | "image" | "vector" | "id"
    value: Any


def unique_names(folders: list[str | os.PathLike]) -> list[str]:
    names: list[str] = []
    for folder in folders:
        base = os.path.basename(os.path.abspath(folder)) or "index"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


class SearchService:
    def __init__(
        self,
        index_dirs: list[str | os.PathLike],
        options: ServeOptions | None = None,
        warn: Callable[[str], None] | None = None,
    ):
        if not index_dirs:
            raise ClipctlError("give at least one index folder")
        self.options = options or ServeOptions()
        if self.options.max_k < 1:
            raise ClipctlError(f"--max-k must be at least 1, got {self.options.max_k}")
        self.indexes = {
            name: SearchIndex(d) for name, d in zip(unique_names(index_dirs), index_dirs, strict=True)
        }
        self.encoders: dict[str, QueryEncoder | None] = {}
        self.encoder_errors: dict[str, str] = {}
        self._load_encoders(warn)

    def _load_encoders(self, warn: Callable[[str], None] | None) -> None:
        shared: dict[tuple, QueryEncoder] = {}
        for name, index in self.indexes.items():
            manifest = index.manifest
            try:
                key = (*choose_weights(manifest, None, None), manifest.get("precision"), manifest["dim"])
            except ClipctlError as err:  # no model recorded, or random weights: vector queries still work
                self.encoders[name], self.encoder_errors[name] = None, str(err)
                if warn is not None:
                    warn(f"{name}: text and image queries are off: {err}")
                continue
            if key not in shared:
                shared[key] = QueryEncoder(manifest, device=self.options.device)
            self.encoders[name] = shared[key]

    # -- lookups --------------------------------------------------------------------------------------------

    def index(self, name: str | None) -> tuple[str, SearchIndex]:
        if not name:
            name = next(iter(self.indexes))
        if name not in self.indexes:
            raise RequestError(404, f"no index named {name!r}; this server has {', '.join(self.indexes)}")
        return name, self.indexes[name]

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                **index.describe(),
                "name": name,
                "queries": self._query_kinds(name),
                "max_k": self.options.max_k,
                "max_upload_bytes": self.options.max_upload_bytes,
            }
            for name, index in self.indexes.items()
        ]

    def _query_kinds(self, name: str) -> list[str]:
        return (["text", "image"] if self.encoders.get(name) else []) + ["vector", "id"]

    def check_k(self, value: Any, default: int = DEFAULT_K, what: str = "k") -> int:
        if value is None or value == "":
            return min(default, self.options.max_k)
        try:
            k = int(value)
        except (TypeError, ValueError):
            raise RequestError(400, f"{what} must be a whole number, got {value!r}") from None
        if isinstance(value, float) and not value.is_integer():
            raise RequestError(400, f"{what} must be a whole number, got {value!r}")
        if not 1 <= k <= self.options.max_k:
            raise RequestError(400, f"{what} must be between 1 and {self.options.max_k}, got {k}")
        return k

    # -- queries --------------------------------------------------------------------------------------------

    def parse_query(self, fields: dict[str, Any]) -> Query:
        """Exactly one of ``text``, ``image`` (bytes or base64), ``vector`` or ``id`` (an indexed row)."""
        given = {
            k: v for k, v in fields.items() if k in ("text", "image", "vector", "id") and v not in (None, "")
        }
        if len(given) != 1:
            listed = ", ".join(sorted(given)) or "none"
            raise RequestError(400, f"give exactly one of text, image, vector or id (got {listed})")
        kind, value = next(iter(given.items()))
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise RequestError(400, "text must be a non-empty string")
            if len(value) > self.options.max_text_chars:
                raise RequestError(
                    400, f"text is {len(value)} characters; the limit is {self.options.max_text_chars}"
                )
        elif kind == "image":
            value = value if isinstance(value, bytes) else decode_base64_image(value)
        elif kind == "vector":
            value = _vector(value)
        else:
            value = _row_id(value)
        return Query(kind, value)

    def vector_for(self, name: str, query: Query) -> np.ndarray:
        index = self.indexes[name]
        if query.kind == "vector":
            return query.value
        if query.kind == "id":
            if not 0 <= query.value < index.count:
                raise RequestError(404, f"row {query.value} is not in index {name!r}")
            return index.vector(query.value)
        encoder = self.encoders.get(name)
        if encoder is None:
            raise RequestError(400, self.encoder_errors.get(name, "this index takes vector queries only"))
        if query.kind == "text":
            return encoder.texts([query.value])[0]
        try:
            image = load_image(query.value, "the uploaded image")
        except ClipctlError as err:
            status = 413 if "pixels" in str(err) else 400
            raise RequestError(status, str(err)) from None
        return encoder.images([image])[0]

    def search(self, name: str | None, query: Query, k: int) -> tuple[str, list[Hit], float]:
        """Run a parsed query; returns the index name, the hits and the milliseconds it took."""
        started = time.perf_counter()
        name, index = self.index(name)
        vector = self.vector_for(name, query)
        try:
            hits = index.search(vector, k, nprobe=self.options.nprobe)[0]
        except ClipctlError as err:  # wrong dimension, zero vector
            raise RequestError(400, str(err)) from None
        return name, hits, (time.perf_counter() - started) * 1000

    def result_json(self, name: str, hit: Hit) -> dict[str, Any]:
        entry = hit.to_dict()
        entry.pop("file")
        # other metadata columns pass through when JSON can hold them (not bytes, nested lists, ...)
        entry["fields"] = {
            k: v for k, v in hit.fields.items() if v is None or isinstance(v, (str, int, float, bool))
        }
        if hit.file:
            entry["thumbnail"] = f"/thumb/{name}/{hit.id}"
            entry["image"] = f"/image/{name}/{hit.id}"
        return entry


_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


def decode_base64_image(value: Any) -> bytes:
    """Base64 image bytes, with or without a ``data:image/...;base64,`` prefix (browsers' FileReader adds it)."""
    if not isinstance(value, str):
        raise RequestError(400, "image must be a base64 string (or an uploaded file)")
    try:
        return base64.b64decode(_DATA_URL.sub("", value.strip()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "image is not valid base64") from None


def _vector(value: Any) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) for v in value):
        raise RequestError(400, "vector must be a non-empty list of numbers")
    if not all(math.isfinite(v) for v in value):
        raise RequestError(400, "vector holds NaN or infinite values")
    return np.asarray(value, dtype=np.float32)


def _row_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RequestError(400, f"id must be a row number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise RequestError(400, f"id must be a row number, got {value!r}") from None
