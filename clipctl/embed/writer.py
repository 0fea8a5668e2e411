"""Where embeddings go, written as they come, so that a crash loses at most the last few seconds of work.

Parquet (the default): completed chunks are written as part files ``OUT.parts/part-NNNNN.parquet`` (each
written to a temporary name and renamed). When the run finishes the parts (and an earlier ``OUT``, if the run
resumes one) are streamed row group by row group into a temporary file beside ``OUT``, which then replaces it. A re-run
reads the keys already in ``OUT`` and ``OUT.parts`` and skips them; merging drops keys it has already written,
so a crash between the rename and the clean-up cannot duplicate a row.

clip-retrieval layout (``--format clip-retrieval``): ``OUT/img_emb/img_emb_N.npy`` (float16, as
clip-retrieval's inference writes them), ``OUT/metadata/metadata_N.parquet`` (``image_path``; ``caption`` for
text), one pair per chunk; the metadata file is written last and marks the pair complete.

Both record the settings (model, pretrained, precision, normalize, ...) and refuse to add embeddings from
different settings to an existing output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipctl import fileio
from clipctl.errors import ClipctlError

# Settings that must agree for embeddings to share one output.
IDENTITY_KEYS = ("model", "pretrained", "precision", "normalize", "modality", "fast_decode")
MANIFEST_NAME = "clipctl_embed.json"


def _mismatch_message(out: Path, found: dict[str, str], wanted: dict[str, str]) -> str | None:
    differing = [k for k in IDENTITY_KEYS if found.get(k, "") != wanted.get(k, "")]
    if not differing:
        return None
    held = ", ".join(f"{k}={found.get(k, '')!s}" for k in differing)
    asked = ", ".join(f"{k}={wanted.get(k, '')!s}" for k in differing)
    return (
        f"{out} holds embeddings made with {held}, but this run uses {asked}; "
        "pass another --out (or delete it to start over)"
    )


class EmbeddingStore:
    """Interface shared by the Parquet and clip-retrieval writers: rows are buffered, then flushed as a chunk."""

    out: Path
    buffer: _ChunkBuffer

    def done_keys(self) -> set:
        raise NotImplementedError

    def add(self, keys: list, embeddings: np.ndarray, extras: dict[str, list]) -> None:
        if not keys:
            return
        self.buffer.add(keys, embeddings, extras)
        if self.buffer.full():
            self.flush()

    def flush(self) -> None:
        raise NotImplementedError

    def finalize(self) -> int:
        raise NotImplementedError


class _ChunkBuffer:
    """Rows waiting to be written; a chunk is written when big enough or old enough."""

    def __init__(self, chunk_rows: int, chunk_seconds: float):
        self.chunk_rows = chunk_rows
        self.chunk_seconds = chunk_seconds
        self.clear()

    def clear(self) -> None:
        self.keys: list = []
        self.embeddings: list[np.ndarray] = []
        self.extras: dict[str, list] = {}
        self.started = time.monotonic()

    def add(self, keys: list, embeddings: np.ndarray, extras: dict[str, list]) -> None:
        if not self.keys:
            self.started = time.monotonic()
        self.keys.extend(keys)
        self.embeddings.append(np.asarray(embeddings, dtype=np.float32))
        for name, values in extras.items():
            self.extras.setdefault(name, []).extend(values)

    def full(self) -> bool:
        return len(self.keys) >= self.chunk_rows or (
            bool(self.keys) and time.monotonic() - self.started >= self.chunk_seconds
        )

    def take(self) -> tuple[list, np.ndarray, dict[str, list]]:
        keys, extras = self.keys, self.extras
        embeddings = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, 0), np.float32)
        self.clear()
        return keys, embeddings, extras


class ParquetStore(EmbeddingStore):
    def __init__(
        self,
        out: str | os.PathLike,
        settings: dict[str, str],
        key_column: str,
        key_type: pa.DataType,
        extra_columns: dict[str, pa.DataType] | None = None,
        chunk_rows: int = 4096,
        chunk_seconds: float = 60.0,
    ):
        self.out = Path(out)
        self.settings = settings
        self.key_column = key_column
        self.key_type = key_type
        self.extra_columns = extra_columns or {}
        self.parts_dir = self.out.with_name(self.out.name + ".parts")
        self.buffer = _ChunkBuffer(chunk_rows, chunk_seconds)
        self._check_existing()
        self._next_part = len(self._part_files())

    # -- identity and resume --------------------------------------------------------------------------------
    def _check_existing(self) -> None:
        if self.out.is_dir():
            raise ClipctlError(
                f"{self.out} is a folder; --format parquet writes one file (or use --format clip-retrieval)"
            )
        if self.out.exists():
            self._read_file_settings(self.out)
        manifest = self.parts_dir / MANIFEST_NAME
        if manifest.exists():
            try:
                found = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError:
                raise ClipctlError(f"{manifest} is corrupt; delete {self.parts_dir} to start over") from None
            self._check_settings(found)

    def _read_file_settings(self, path: Path) -> dict[str, str]:
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError):
            raise ClipctlError(f"{path} exists and is not a Parquet file; pass another --out") from None
        meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        if "model" not in meta:
            raise ClipctlError(f"{path} exists and was not written by `clipctl embed`; pass another --out")
        self._check_settings(meta)
        if schema.get_field_index(self.key_column) < 0:
            raise ClipctlError(
                f"{path} keys its rows by {schema.names[0]!r}, this input by {self.key_column!r} "
                "(folders and lists use paths, shards use keys); pass another --out"
            )
        return meta

    def _check_settings(self, found: dict[str, str]) -> None:
        message = _mismatch_message(self.out, found, self.settings)
        if message:
            raise ClipctlError(message)

    def _part_files(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def _sources(self) -> list[Path]:
        return ([self.out] if self.out.exists() else []) + self._part_files()

    def done_keys(self) -> set:
        done: set = set()
        for path in self._sources():
            for batch in pq.ParquetFile(path).iter_batches(columns=[self.key_column]):
                done.update(batch.column(0).to_pylist())
        return done

    # -- writing --------------------------------------------------------------------------------------------
    def _schema(self, dim: int) -> pa.Schema:
        fields = [pa.field(self.key_column, self.key_type)]
        fields += [pa.field(name, dtype) for name, dtype in self.extra_columns.items()]
        fields.append(pa.field("embedding", pa.list_(pa.float32(), dim)))
        return pa.schema(fields, metadata={**self.settings, "dim": str(dim)})

    def _table(self, keys: list, embeddings: np.ndarray, extras: dict[str, list]) -> pa.Table:
        dim = embeddings.shape[1]
        schema = self._schema(dim)
        columns = [pa.array(keys, self.key_type)]
        columns += [pa.array(extras[name], dtype) for name, dtype in self.extra_columns.items()]
        flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1), pa.float32())
        columns.append(pa.FixedSizeListArray.from_arrays(flat, dim))
        return pa.Table.from_arrays(columns, schema=schema)

    def flush(self) -> None:
        """Write buffered rows as the next part file."""
        if not self.buffer.keys:
            return
        table = self._table(*self.buffer.take())
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        manifest = self.parts_dir / MANIFEST_NAME
        if not manifest.exists():
            fileio.write_json_atomic(manifest, self.settings, indent=1)
        final = self.parts_dir / f"part-{self._next_part:05d}.parquet"
        fileio.write_with(final, lambda tmp: pq.write_table(table, tmp))
        self._next_part += 1

    def finalize(self) -> int:
        """Merge ``OUT`` (if any) and the parts into a new ``OUT``; returns its row count."""
        self.flush()
        parts = self._part_files()
        if not parts:
            return pq.ParquetFile(self.out).metadata.num_rows if self.out.exists() else 0
        rows = 0

        def merge_into(partial: Path) -> None:
            nonlocal rows
            seen: set = set()
            writer: pq.ParquetWriter | None = None
            try:
                for table in self._merged_tables(self._sources(), seen):
                    if writer is None:
                        dim = table.schema.field("embedding").type.list_size
                        writer = pq.ParquetWriter(partial, self._schema(dim))
                    writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
                    rows += table.num_rows
            finally:
                if writer is not None:
                    writer.close()

        fileio.write_with(self.out, merge_into)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return rows

    def _merged_tables(self, sources: Iterable[Path], seen: set) -> Iterator[pa.Table]:
        for path in sources:
            parquet = pq.ParquetFile(path)
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group)
                keys = table.column(self.key_column).to_pylist()
                keep = [i for i, key in enumerate(keys) if key not in seen]
                seen.update(keys)
                if len(keep) < len(keys):
                    table = table.take(pa.array(keep, pa.int64()))
                if table.num_rows:
                    yield table


class ClipRetrievalStore(EmbeddingStore):
    """clip-retrieval's inference output layout, one ``img_emb_N.npy`` + ``metadata_N.parquet`` per chunk."""

    _ID = re.compile(r"_(\d+)\.(?:npy|parquet)$")

    def __init__(
        self,
        out: str | os.PathLike,
        settings: dict[str, str],
        key_column: str,
        chunk_rows: int = 4096,
        chunk_seconds: float = 60.0,
    ):
        self.out = Path(out)
        self.settings = settings
        self.key_column = key_column  # "image_path" or "caption"
        self.is_text = settings.get("modality") == "text"
        self.emb_dir = self.out / ("text_emb" if self.is_text else "img_emb")
        self.emb_prefix = "text_emb" if self.is_text else "img_emb"
        self.meta_dir = self.out / "metadata"
        self.buffer = _ChunkBuffer(chunk_rows, chunk_seconds)
        self._check_existing()
        self._drop_orphans()
        ids = [self._id(p) for p in self._metadata_files()]
        self._next_id = max(ids) + 1 if ids else 0

    def _id(self, path: Path) -> int:
        match = self._ID.search(path.name)
        return int(match.group(1)) if match else -1

    def _check_existing(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise ClipctlError(f"{self.out} is a file; --format clip-retrieval writes a folder")
        manifest = self.out / MANIFEST_NAME
        if manifest.exists():
            try:
                found = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError:
                raise ClipctlError(f"{manifest} is corrupt; delete {self.out} to start over") from None
            message = _mismatch_message(self.out, found, self.settings)
            if message:
                raise ClipctlError(message)
        elif self.out.is_dir() and any(self.out.iterdir()):
            raise ClipctlError(
                f"{self.out} exists and was not written by `clipctl embed`; pass another --out"
            )

    def _metadata_files(self) -> list[Path]:
        if not self.meta_dir.is_dir():
            return []
        return sorted((p for p in self.meta_dir.glob("metadata_*.parquet") if self._id(p) >= 0), key=self._id)

    def _drop_orphans(self) -> None:
        """An embedding file without its metadata file is a chunk a crash interrupted: it is redone."""
        complete = {self._id(p) for p in self._metadata_files()}
        if self.emb_dir.is_dir():
            for path in self.emb_dir.glob(f"{self.emb_prefix}_*.npy"):
                if self._id(path) not in complete:
                    path.unlink()

    def done_keys(self) -> set:
        done: set = set()
        column = "line" if self.is_text else "image_path"
        for path in self._metadata_files():
            done.update(pq.read_table(path, columns=[column]).column(0).to_pylist())
        return done

    def flush(self) -> None:
        if not self.buffer.keys:
            return
        keys, embeddings, extras = self.buffer.take()
        self.emb_dir.mkdir(parents=True, exist_ok=True)
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        manifest = self.out / MANIFEST_NAME
        if not manifest.exists():
            fileio.write_json_atomic(manifest, {**self.settings, "dim": str(embeddings.shape[1])}, indent=1)
        chunk = self._next_id
        emb_path = self.emb_dir / f"{self.emb_prefix}_{chunk}.npy"
        with fileio.atomic_open(emb_path) as f:
            np.save(f, embeddings.astype(np.float16))
        columns: dict[str, Any] = (
            {"caption": extras["text"], "line": keys} if self.is_text else {"image_path": keys}
        )
        meta_path = self.meta_dir / f"metadata_{chunk}.parquet"
        fileio.write_with(meta_path, lambda tmp: pq.write_table(pa.table(columns), tmp))
        self._next_id += 1

    def finalize(self) -> int:
        # Files keep their plain chunk numbers (img_emb_0 ... img_emb_12): clip-retrieval's readers sort the
        # embedding and metadata folders by name, and identical suffixes sort identically, so pairs stay aligned.
        self.flush()
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self._metadata_files())
