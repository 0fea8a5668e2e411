"""The index folder, and how it changes without ever being half-written.

::

    INDEX/
      clipctl_index.json      what the index holds: model, tag, dimension, row count, plan, and the files below
      vectors.f32             the unit vectors, float32, row-major, row i = result id i (memory-mapped)
      rows/part-00000.arrow   the rows' metadata (path or key, caption, ...), Arrow IPC files (memory-mapped)
      ivf-00000.faiss         approximate indexes only: the faiss IVF index (memory-mapped)

The manifest is written last and names every file and the row count, so a reader never sees a partial
update. ``--append`` appends to ``vectors.f32`` (bytes past the recorded count are ignored, and cut off by the
next append), writes a new rows part and a new faiss generation under new names, then replaces the manifest;
files the manifest does not name are leftovers of an interrupted append and are removed by the next one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clipctl.errors import ClipctlError
from clipctl.fileio import write_bytes_atomic, write_json_atomic, write_with

MANIFEST = "clipctl_index.json"
VECTORS = "vectors.f32"
ROWS_DIR = "rows"
FORMAT = "clipctl-index"
VERSION = 1


def is_index(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.exists():
        raise ClipctlError(f"{folder}: no such index folder (build one with `clipctl index`)")
    if not path.is_file():
        raise ClipctlError(f"{folder} is not an index built by `clipctl index` (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise ClipctlError(f"{path} is unreadable ({err}); rebuild the index") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ClipctlError(
            f"{folder} is a {manifest.get('format')} index version {manifest.get('version')}; this clipctl reads "
            f"{FORMAT} version {VERSION} (rebuild it)"
        )
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(folder / MANIFEST, manifest)


# -- vectors ------------------------------------------------------------------------------------------------


def open_vectors(folder: Path, count: int, dim: int) -> np.ndarray:
    """The first ``count`` vectors, memory-mapped read-only (pages are read from disk as searches touch them)."""
    path = folder / VECTORS
    expected = count * dim * 4
    size = path.stat().st_size if path.exists() else -1
    if size < expected:
        raise ClipctlError(f"{path} holds {max(size, 0)} bytes, fewer than the {expected} its manifest needs")
    if count == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.memmap(path, dtype="<f4", mode="r", shape=(count, dim))


def append_vectors(folder: Path, count_before: int, dim: int, vectors: np.ndarray) -> None:
    """Add rows after the first ``count_before`` (anything beyond them is an interrupted append's leftover)."""
    path = folder / VECTORS
    with open(path, "r+b" if path.exists() else "w+b") as handle:
        handle.truncate(count_before * dim * 4)
        handle.seek(0, os.SEEK_END)
        handle.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        handle.flush()
        os.fsync(handle.fileno())


# -- row metadata -------------------------------------------------------------------------------------------


def rows_part_name(number: int) -> str:
    return f"{ROWS_DIR}/part-{number:05d}.arrow"


def write_rows_part(folder: Path, name: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    write_bytes_atomic(folder / name, sink.getvalue().to_pybytes())


def read_rows(folder: Path, parts: list[dict[str, Any]]) -> pa.Table:
    """All rows in id order, memory-mapped (zero-copy: the strings stay on disk until a result needs them)."""
    tables = []
    for part in parts:
        path = folder / part["file"]
        try:
            table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        except (pa.ArrowException, OSError) as err:
            raise ClipctlError(f"{path} is unreadable ({err}); rebuild the index") from None
        if table.num_rows != part["rows"]:
            raise ClipctlError(f"{path} holds {table.num_rows} rows, its manifest says {part['rows']}")
        tables.append(table)
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


# -- faiss --------------------------------------------------------------------------------------------------


def faiss_name(generation: int) -> str:
    return f"ivf-{generation:05d}.faiss"


def write_faiss(folder: Path, name: str, index: object) -> None:
    import faiss

    write_with(folder / name, lambda tmp: faiss.write_index(index, str(tmp)))


def read_faiss(folder: Path, name: str, *, mmap: bool) -> object:
    import faiss

    path = folder / name
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as err:
        raise ClipctlError(f"{path} is not a readable faiss index ({str(err).splitlines()[0]})") from None


def remove_unlisted(folder: Path, manifest: dict[str, Any]) -> None:
    """Delete what an interrupted append left behind: files the manifest does not name."""
    listed = {part["file"] for part in manifest["row_files"]}
    for path in (folder / ROWS_DIR).glob("*"):
        if f"{ROWS_DIR}/{path.name}" not in listed:
            path.unlink(missing_ok=True)
    for path in folder.glob("*.faiss"):
        if path.name != manifest.get("faiss_file"):
            path.unlink(missing_ok=True)
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)
