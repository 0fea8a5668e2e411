"""What `clipctl index` reads: the embeddings `clipctl embed` wrote, as a Parquet file or in clip-retrieval's
folder layout (``img_emb/img_emb_N.npy`` or ``text_emb/text_emb_N.npy`` beside ``metadata/metadata_N.parquet``).

Both are read in chunks, so a source larger than memory can be indexed. Each chunk carries its float32 vectors
and the other columns of its rows (path or key, caption, anything else the file holds); the settings the
embeddings were made with (model, pretrained tag, precision, normalisation, modality) come from the Parquet
file's key-value metadata or the folder's ``clipctl_embed.json``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clipctl.errors import ClipctlError

# Settings an index keeps from its source, and that an --append source must share.
IDENTITY_KEYS = ("model", "pretrained", "precision", "normalize", "modality")
KEY_COLUMNS = ("path", "key", "image_path", "line", "id")
CAPTION_COLUMNS = ("caption", "text")
CHUNK_ROWS = 65_536
EMBED_MANIFEST = "clipctl_embed.json"  # written by clipctl.embed.writer beside clip-retrieval's layout
_CHUNK_ID = re.compile(r"_(\d+)\.(?:npy|parquet)$")


@dataclass
class Chunk:
    vectors: np.ndarray  # (rows, dim) float32
    rows: pa.Table  # the same rows' other columns


@dataclass
class EmbeddingSource:
    """One embeddings file or folder, ready to be read chunk by chunk."""

    path: Path
    layout: str  # "parquet" | "clip-retrieval"
    settings: dict[str, str]
    dim: int
    num_rows: int
    key_column: str | None
    caption_column: str | None
    root: str | None  # where relative image paths are relative to
    _pairs: list[tuple[Path, Path]] = field(default_factory=list, repr=False)

    def chunks(self) -> Iterator[Chunk]:
        if self.layout == "parquet":
            yield from _parquet_chunks(self.path, self.dim)
        else:
            yield from _folder_chunks(self._pairs, self.dim)


def open_source(
    src: str | os.PathLike, *, modality: str | None = None, overrides: dict[str, str] | None = None
) -> EmbeddingSource:
    """Open ``src`` (a Parquet file or a clip-retrieval folder). ``overrides`` fill in settings (model,
    pretrained) that a source made by another tool does not record; they may not contradict recorded ones."""
    path = Path(src).expanduser()
    if not path.exists():
        raise ClipctlError(f"{src}: no such file or folder")
    if path.is_dir():
        source = _open_folder(path, modality)
    else:
        source = _open_parquet(path)
        if modality is not None and modality != source.settings.get("modality", "image"):
            raise ClipctlError(
                f"{src} holds {source.settings.get('modality', 'image')} embeddings; --modality {modality} "
                "applies to clip-retrieval folders that hold both"
            )
    _apply_overrides(source, overrides or {})
    if source.num_rows == 0:
        raise ClipctlError(f"{src} holds no embeddings")
    return source


def _apply_overrides(source: EmbeddingSource, overrides: dict[str, str]) -> None:
    for name, value in overrides.items():
        if value is None:
            continue
        recorded = source.settings.get(name)
        if recorded and recorded != value:
            raise ClipctlError(
                f"{source.path} was embedded with {name}={recorded}, not {value}; drop --{name} "
                "(it only fills in what a source made by another tool does not record)"
            )
        source.settings[name] = value


# -- Parquet ------------------------------------------------------------------------------------------------


def _open_parquet(path: Path) -> EmbeddingSource:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError):
        raise ClipctlError(f"{path} is not a Parquet file (pass `clipctl embed` output)") from None
    schema = parquet.schema_arrow
    if schema.get_field_index("embedding") < 0:
        raise ClipctlError(f"{path} has no 'embedding' column (columns: {', '.join(schema.names)})")
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    settings = {k: meta[k] for k in (*IDENTITY_KEYS, "source") if k in meta}
    settings.setdefault("modality", "image")
    dim = _parquet_dim(path, parquet, schema.field("embedding").type, meta)
    key_column = next((c for c in KEY_COLUMNS if c in schema.names), None)
    caption_column = next((c for c in CAPTION_COLUMNS if c in schema.names), None)
    root = settings.get("source") if key_column == "path" else None
    return EmbeddingSource(
        path, "parquet", settings, dim, parquet.metadata.num_rows, key_column, caption_column, root
    )


def _parquet_dim(path: Path, parquet: pq.ParquetFile, kind: pa.DataType, meta: dict[str, str]) -> int:
    if pa.types.is_fixed_size_list(kind):
        return int(kind.list_size)
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise ClipctlError(f"{path}: 'embedding' is {kind}, not a list of floats")
    if "dim" in meta:
        return int(meta["dim"])
    first = next(parquet.iter_batches(batch_size=1, columns=["embedding"]), None)
    if first is None or first.num_rows == 0:
        return 0
    return len(first.column(0)[0])


def _parquet_chunks(path: Path, dim: int) -> Iterator[Chunk]:
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
        table = pa.Table.from_batches([batch])
        vectors = _list_column_to_numpy(table.column("embedding"), dim, path)
        yield Chunk(vectors, table.drop_columns(["embedding"]))


def _list_column_to_numpy(column: pa.ChunkedArray, dim: int, path: Path) -> np.ndarray:
    """(rows, dim) float32; a null embedding becomes a row of NaN, which the builder skips and counts."""
    array = column.combine_chunks()
    out = np.full((len(array), dim), np.nan, dtype=np.float32)
    valid = np.asarray(array.is_valid())
    if not valid.any():
        return out
    present = array.filter(pa.array(valid))
    lengths = np.asarray(present.value_lengths()) if not pa.types.is_fixed_size_list(array.type) else None
    if lengths is not None and (lengths != dim).any():
        raise ClipctlError(f"{path}: embeddings of different lengths ({sorted(set(lengths.tolist()))[:4]})")
    values = present.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    out[valid] = values.reshape(-1, dim)
    return out


# -- clip-retrieval's folder layout -------------------------------------------------------------------------


def _chunk_id(path: Path) -> int:
    match = _CHUNK_ID.search(path.name)
    return int(match.group(1)) if match else -1


def _open_folder(folder: Path, modality: str | None) -> EmbeddingSource:
    found = [m for m in ("image", "text") if _embedding_files(folder, m)]
    if not found:
        raise ClipctlError(
            f"{folder} is not an embeddings folder: no img_emb/img_emb_N.npy or text_emb/text_emb_N.npy "
            "(pass a Parquet file from `clipctl embed`, or its --format clip-retrieval folder)"
        )
    if modality is None:
        modality = "image" if "image" in found else "text"
    if modality not in found:
        raise ClipctlError(f"{folder} holds no {modality} embeddings (it holds {', '.join(found)})")
    settings = _folder_settings(folder)
    if settings.get("modality", modality) != modality:
        raise ClipctlError(f"{folder} holds {settings['modality']} embeddings, not {modality}")
    settings["modality"] = modality
    pairs = _pair_files(folder, modality)
    num_rows, dim = 0, 0
    columns: list[str] = []
    for emb_path, meta_path in pairs:
        rows, dim = _npy_shape(emb_path, dim)
        meta_rows = pq.ParquetFile(meta_path).metadata.num_rows
        if meta_rows != rows:
            raise ClipctlError(f"{emb_path.name} holds {rows} rows but {meta_path.name} {meta_rows}")
        num_rows += rows
        columns = columns or pq.read_schema(meta_path).names
    key_column = next((c for c in KEY_COLUMNS if c in columns), None)
    caption_column = next((c for c in CAPTION_COLUMNS if c in columns), None)
    root = (
        str(Path.cwd()) if key_column == "image_path" else None
    )  # clip-retrieval records paths as it read them
    source = EmbeddingSource(
        folder, "clip-retrieval", settings, dim, num_rows, key_column, caption_column, root
    )
    source._pairs = pairs
    return source


def _embedding_files(folder: Path, modality: str) -> list[Path]:
    prefix = "img_emb" if modality == "image" else "text_emb"
    return sorted((folder / prefix).glob(f"{prefix}_*.npy"), key=_chunk_id)


def _folder_settings(folder: Path) -> dict[str, str]:
    manifest = folder / EMBED_MANIFEST
    if not manifest.exists():
        return {}
    try:
        found = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        raise ClipctlError(f"{manifest} is corrupt") from None
    return {k: str(found[k]) for k in (*IDENTITY_KEYS, "source") if k in found}


def _pair_files(folder: Path, modality: str) -> list[tuple[Path, Path]]:
    metadata = {_chunk_id(p): p for p in (folder / "metadata").glob("metadata_*.parquet")}
    pairs = []
    for emb_path in _embedding_files(folder, modality):
        meta_path = metadata.get(_chunk_id(emb_path))
        if meta_path is None:
            continue  # an interrupted chunk: embed writes the metadata file last
        pairs.append((emb_path, meta_path))
    return pairs


def _npy_shape(path: Path, dim: int) -> tuple[int, int]:
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise ClipctlError(f"{path} is not a readable .npy file ({err})") from None
    if array.ndim != 2 or (dim and array.shape[1] != dim):
        raise ClipctlError(f"{path} has shape {array.shape}; expected (rows, {dim or 'dim'})")
    return int(array.shape[0]), int(array.shape[1])


def _folder_chunks(pairs: list[tuple[Path, Path]], dim: int) -> Iterator[Chunk]:
    for emb_path, meta_path in pairs:
        vectors = np.load(emb_path, mmap_mode="r")
        metadata = pq.read_table(meta_path)
        for start in range(0, len(vectors), CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, len(vectors))
            yield Chunk(
                np.asarray(vectors[start:stop], dtype=np.float32), metadata.slice(start, stop - start)
            )
