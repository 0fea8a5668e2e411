"""`clipctl index`: embeddings -> an index folder (see ``layout.py``), built whole or appended to.

A new index is written into a hidden folder beside ``--out`` and renamed into place when complete, so a failed
or interrupted build leaves nothing (and an existing index untouched). ``--append`` adds the rows of the source
whose key (path, shard key, caption line) the index does not hold yet: the vectors are appended, and an
approximate index encodes them with its trained quantisers (no retraining), then re-tunes ``nprobe``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clipctl.errors import ClipctlError
from clipctl.fileio import atomic_folder
from clipctl.search import layout
from clipctl.search.deps import require
from clipctl.search.knn import normalize_rows
from clipctl.search.planner import (
    DEFAULT_EXACT_BELOW,
    DEFAULT_MAX_INDEX_MEMORY,
    IndexPlan,
    parse_memory,
    plan_index,
)
from clipctl.search.sources import IDENTITY_KEYS, Chunk, EmbeddingSource, open_source
from clipctl.search.tuning import tune_nprobe

FILE_COLUMN = "_file"  # the resolved image file of a row (None when there is none), what `serve` may send
MAX_TRAIN_POINTS = 262_144
TRAIN_POINTS_PER_LIST = 64


@dataclass
class IndexOptions:
    max_index_memory: int | str = DEFAULT_MAX_INDEX_MEMORY
    exact_below: int = DEFAULT_EXACT_BELOW
    target_recall: float = 0.95
    modality: str | None = None  # clip-retrieval folders holding image and text embeddings: which to index
    model: str | None = None  # fill in for sources that do not record their model
    pretrained: str | None = None
    overwrite: bool = False
    progress: bool = False


@dataclass
class IndexSummary:
    out: str
    appended: bool
    added: int
    total: int
    kind: str
    factory: str | None
    nprobe: int | None
    expected_recall: float
    recall_sample: int
    memory_bytes: int
    vectors_bytes: int
    seconds: float
    reason: str
    skipped_known: int = 0  # --append: rows the index already holds
    skipped_invalid: int = 0  # null or non-finite embeddings
    duplicates: int = 0  # rows whose key appeared earlier in the source
    missing_files: int = 0  # image rows whose file does not exist (searchable, but without a thumbnail)
    notes: list[str] = field(default_factory=list)


def _check_options(options: IndexOptions) -> int:
    if not 0 < options.target_recall <= 1:
        raise ClipctlError(f"--target-recall must be in (0, 1], got {options.target_recall}")
    if options.exact_below < 0:
        raise ClipctlError(f"--exact-below must be 0 or more, got {options.exact_below}")
    return parse_memory(options.max_index_memory)


# -- reading rows -------------------------------------------------------------------------------------------


@dataclass
class _RowFilter:
    """Keeps rows with a finite embedding and a key not seen before; counts what it drops."""

    key_column: str | None
    initial: set = field(default_factory=set)  # keys the index already holds (--append)
    seen: set = field(default_factory=set)
    skipped_known: int = 0
    skipped_invalid: int = 0
    duplicates: int = 0

    def keep(self, chunk: Chunk) -> np.ndarray:
        mask = np.isfinite(chunk.vectors).all(axis=1)
        self.skipped_invalid += int((~mask).sum())
        if self.key_column is None:
            return mask
        for i, key in enumerate(chunk.rows.column(self.key_column).to_pylist()):
            if not mask[i]:
                continue
            if key in self.initial:
                mask[i] = False
                self.skipped_known += 1
            elif key in self.seen:
                mask[i] = False
                self.duplicates += 1
            else:
                self.seen.add(key)
        return mask


def _resolve_files(rows: pa.Table, source: EmbeddingSource) -> tuple[pa.Array, int]:
    """Absolute, symlink-free path of each row's image as it is now; None for rows without one."""
    if source.settings.get("modality") != "image" or source.key_column not in ("path", "image_path"):
        return pa.nulls(rows.num_rows, pa.string()), 0
    root = Path(source.root or Path.cwd())
    files, missing = [], 0
    for key in rows.column(source.key_column).to_pylist():
        path = os.path.realpath(root / key) if key else None
        if path is None or not os.path.isfile(path):
            files.append(None)
            missing += 1
        else:
            files.append(path)
    return pa.array(files, pa.string()), missing


def _ingest(
    source: EmbeddingSource, folder: Path, count_before: int, row_filter: _RowFilter, progress: bool
) -> tuple[pa.Table | None, int, int]:
    """Append the source's new rows to ``folder``'s vectors file; returns (their metadata, count, missing)."""
    from clipctl.runtime import progress_bar

    tables, added, missing = [], 0, 0
    with progress_bar(progress, source.num_rows, "reading embeddings") as advance:
        for chunk in source.chunks():
            mask = row_filter.keep(chunk)
            if mask.any():
                vectors = normalize_rows(chunk.vectors[mask])
                layout.append_vectors(folder, count_before + added, source.dim, vectors)
                rows = chunk.rows.filter(pa.array(mask))
                files, chunk_missing = _resolve_files(rows, source)
                tables.append(rows.append_column(FILE_COLUMN, files))
                added += len(vectors)
                missing += chunk_missing
            advance(len(mask))
    if not tables:
        return None, 0, 0
    return pa.concat_tables(tables, promote_options="permissive"), added, missing


# -- the faiss part -----------------------------------------------------------------------------------------


def _train_ivf(vectors: np.ndarray, plan: IndexPlan) -> Any:
    import faiss

    index = faiss.index_factory(vectors.shape[1], plan.factory, faiss.METRIC_INNER_PRODUCT)
    train_size = min(len(vectors), plan.nlist * TRAIN_POINTS_PER_LIST, MAX_TRAIN_POINTS)
    rows = np.sort(np.random.default_rng(0).choice(len(vectors), size=train_size, replace=False))
    index.train(np.asarray(vectors[rows], dtype=np.float32))
    return index


def _add_to_ivf(index: Any, vectors: np.ndarray, start: int) -> None:
    step = 65_536
    for begin in range(start, len(vectors), step):
        index.add(np.asarray(vectors[begin : begin + step], dtype=np.float32))


def _plan_from(manifest: dict[str, Any]) -> IndexPlan:
    return IndexPlan(**manifest["plan"])


# -- publishing ---------------------------------------------------------------------------------------------


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ClipctlError(f"{out} is a file; --out names the index folder to create")
    if layout.is_index(out):
        if not overwrite:
            raise ClipctlError(
                f"{out} already holds an index; pass --append to add rows or --overwrite to rebuild"
            )
        return
    if any(out.iterdir()):
        raise ClipctlError(f"{out} exists and is not an index folder; pass another --out")


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time: a second `clipctl index --append` on the same folder waits for the first."""
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _identity(source: EmbeddingSource) -> dict[str, str]:
    return {k: source.settings.get(k, "") for k in IDENTITY_KEYS}


def _base_manifest(source: EmbeddingSource) -> dict[str, Any]:
    from clipctl import __version__

    return {
        "format": layout.FORMAT,
        "version": layout.VERSION,
        **_identity(source),
        "dim": source.dim,
        "count": 0,
        "metric": "cosine",
        "key_column": source.key_column,
        "caption_column": source.caption_column,
        "file_column": FILE_COLUMN,
        "root": source.root,
        "weights_file": _weights_file(source.settings.get("pretrained", "")),
        "sources": [],
        "row_files": [],
        "faiss_file": None,
        "generation": 0,
        "created_by": f"clipctl {__version__}",
    }


def _weights_file(pretrained: str) -> str | None:
    """A weights file named relative to where `clipctl embed` ran, made absolute while that is likely still
    the working folder, so queries find it from anywhere."""
    path = Path(pretrained).expanduser() if pretrained else None
    return str(path.resolve()) if path is not None and path.is_file() else None


def _record_source(manifest: dict[str, Any], source: EmbeddingSource, added: int) -> None:
    manifest["sources"].append(
        {"path": str(source.path.resolve()), "rows_added": added, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    )


def build_index(
    src: str | os.PathLike, out: str | os.PathLike, options: IndexOptions | None = None
) -> IndexSummary:
    """Build a new index of ``src`` in ``out`` (refused if ``out`` holds one, unless ``options.overwrite``)."""
    require(what="clipctl index")
    options = options or IndexOptions()
    max_memory = _check_options(options)
    started = time.perf_counter()
    out = Path(out).expanduser()
    _check_out(out, options.overwrite)
    source = open_source(
        src, modality=options.modality, overrides={"model": options.model, "pretrained": options.pretrained}
    )
    _check_disk(out, source)
    # staged beside `out` and renamed into place when complete; an existing index (--overwrite) is swapped out whole
    with atomic_folder(out) as stage:
        manifest = _base_manifest(source)
        row_filter = _RowFilter(source.key_column)
        rows, added, missing = _ingest(source, stage, 0, row_filter, options.progress)
        if not added:
            raise ClipctlError(
                f"{src} holds no usable embeddings ({row_filter.skipped_invalid} null or non-finite)"
            )
        _write_rows(stage, manifest, rows)
        manifest["count"] = added
        plan = plan_index(added, source.dim, max_memory, options.exact_below)
        manifest["plan"] = plan.to_dict()
        _finish_faiss(stage, manifest, plan, options.target_recall, fresh=True)
        _record_source(manifest, source, added)
        layout.write_manifest(stage, manifest)
    return _summary(out, manifest, added, row_filter, missing, started, appended=False)


def _check_disk(out: Path, source: EmbeddingSource) -> None:
    from clipctl.data.outdir import check_free_space

    check_free_space(out.parent, int(source.num_rows * source.dim * 4 * 1.3) + (1 << 20), "the index")


def _write_rows(folder: Path, manifest: dict[str, Any], rows: pa.Table) -> None:
    number = len(manifest["row_files"])
    name = layout.rows_part_name(number)
    while any(part["file"] == name for part in manifest["row_files"]):
        number += 1
        name = layout.rows_part_name(number)
    layout.write_rows_part(folder, name, rows)
    manifest["row_files"].append({"file": name, "rows": rows.num_rows})


def _finish_faiss(
    folder: Path, manifest: dict[str, Any], plan: IndexPlan, target: float, fresh: bool
) -> None:
    """Approximate indexes: train (new) or load (append), add the new vectors, write, tune ``nprobe``."""
    count, dim = manifest["count"], manifest["dim"]
    if plan.kind == "exact":
        manifest.update(nprobe=None, expected_recall=1.0, recall_sample=0, memory_bytes=count * dim * 4)
        return
    vectors = layout.open_vectors(folder, count, dim)
    if fresh:
        index = _train_ivf(vectors, plan)
        start = 0
        manifest["trained_count"] = count
    else:
        index = layout.read_faiss(folder, manifest["faiss_file"], mmap=False)
        start = int(index.ntotal)
    _add_to_ivf(index, vectors, start)
    tuning = tune_nprobe(index, vectors, plan, target)
    manifest["generation"] += 0 if fresh else 1
    name = layout.faiss_name(manifest["generation"])
    layout.write_faiss(folder, name, index)
    manifest.update(
        faiss_file=name,
        nprobe=tuning.nprobe,
        expected_recall=round(tuning.recall, 4),
        recall_sample=tuning.sample,
        memory_bytes=(folder / name).stat().st_size,
    )


def _summary(
    out: Path,
    manifest: dict[str, Any],
    added: int,
    row_filter: _RowFilter,
    missing: int,
    started: float,
    appended: bool,
    notes: list[str] | None = None,
) -> IndexSummary:
    plan = manifest["plan"]
    return IndexSummary(
        out=str(out),
        appended=appended,
        added=added,
        total=manifest["count"],
        kind=plan["kind"],
        factory=plan["factory"],
        nprobe=manifest["nprobe"],
        expected_recall=manifest["expected_recall"],
        recall_sample=manifest["recall_sample"],
        memory_bytes=manifest["memory_bytes"],
        vectors_bytes=manifest["count"] * manifest["dim"] * 4,
        seconds=time.perf_counter() - started,
        reason=plan["reason"],
        skipped_known=row_filter.skipped_known,
        skipped_invalid=row_filter.skipped_invalid,
        duplicates=row_filter.duplicates,
        missing_files=missing,
        notes=notes or [],
    )


# -- append -------------------------------------------------------------------------------------------------


def _check_same_embeddings(manifest: dict[str, Any], source: EmbeddingSource, out: Path) -> None:
    wanted = {**_identity(source), "dim": str(source.dim)}
    held = {**{k: str(manifest.get(k, "")) for k in IDENTITY_KEYS}, "dim": str(manifest["dim"])}
    differing = [k for k in wanted if wanted[k] != held[k]]
    if differing:
        found = ", ".join(f"{k}={held[k]}" for k in differing)
        given = ", ".join(f"{k}={wanted[k]}" for k in differing)
        raise ClipctlError(
            f"{out} indexes embeddings with {found}, but {source.path} holds {given}; build a new index"
        )


def _known_keys(folder: Path, manifest: dict[str, Any]) -> set:
    rows = layout.read_rows(folder, manifest["row_files"])
    return set(rows.column(manifest["key_column"]).to_pylist())


def append_index(
    src: str | os.PathLike, out: str | os.PathLike, options: IndexOptions | None = None
) -> IndexSummary:
    """Add the rows of ``src`` that the index in ``out`` does not hold yet."""
    require(what="clipctl index")
    options = options or IndexOptions()
    _check_options(options)
    started = time.perf_counter()
    out = Path(out).expanduser()
    manifest = layout.read_manifest(out)
    with _locked(out):
        manifest = layout.read_manifest(out)  # as the previous writer left it
        modality = options.modality or manifest.get("modality")
        source = open_source(
            src, modality=modality, overrides={"model": options.model, "pretrained": options.pretrained}
        )
        _check_same_embeddings(manifest, source, out)
        if manifest["key_column"] is None or source.key_column != manifest["key_column"]:
            raise ClipctlError(
                f"{src} names its rows by {source.key_column!r}, the index by {manifest['key_column']!r}: "
                "cannot tell which rows are new; build a new index"
            )
        layout.remove_unlisted(out, manifest)
        row_filter = _RowFilter(source.key_column, _known_keys(out, manifest))
        rows, added, missing = _ingest(source, out, manifest["count"], row_filter, options.progress)
        notes = []
        if added:
            _write_rows(out, manifest, rows)
            manifest["count"] += added
            plan = _plan_from(manifest)
            _finish_faiss(out, manifest, plan, options.target_recall, fresh=False)
            _record_source(manifest, source, added)
            layout.write_manifest(out, manifest)
            layout.remove_unlisted(out, manifest)
            notes = _growth_notes(manifest, plan, options)
    return _summary(out, manifest, added, row_filter, missing, started, appended=True, notes=notes)


def _growth_notes(manifest: dict[str, Any], plan: IndexPlan, options: IndexOptions) -> list[str]:
    count = manifest["count"]
    if plan.kind == "exact" and count >= options.exact_below:
        return [
            f"the index now holds {count:,} vectors (>= --exact-below {options.exact_below:,}) and still "
            "searches them all exactly; rebuild it (--overwrite) for a faster approximate index"
        ]
    trained_for = manifest.get("trained_count") or count
    if plan.kind == "approximate" and count > 4 * trained_for:
        return [
            f"the index has grown {count / trained_for:.0f}x since its {plan.nlist} lists were trained "
            f"(recall {manifest['expected_recall']:.3f} at nprobe {manifest['nprobe']}); rebuild it "
            f"(--overwrite) for faster queries"
        ]
    return []
