"""Webdataset shards in img2dataset's layout, written so that a crash never leaves a half shard behind.

One shard is ``00000.tar`` (per sample ``{key}.jpg``, ``{key}.txt``, ``{key}.json``), ``00000.parquet`` (one row
per input sample, failures included) and ``00000_stats.json`` (counts and failure reasons). Keys are numbered as
img2dataset numbers them: the shard id followed by the sample's index in the shard's input rows, zero-padded, so
failed samples leave gaps. The shard folder also holds our ``sizes.json`` (tar basename -> sample count), which
OpenCLIP-style loaders read instead of needing ``--train-num-samples``.

Every file goes to a hidden temporary name first and is renamed once complete; the stats file is renamed last,
because its presence is what marks a shard as done (img2dataset's ``incremental`` mode reads it the same way).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clipctl.data.shardlist import SIZES_FILE
from clipctl.fileio import commit, write_bytes_atomic

SHARD_ID_DIGITS = 5  # img2dataset's default oom_shard_count
# Fixed tar metadata so that the same input gives byte-identical shards (webdataset's TarWriter defaults,
# except the time stamp, which it takes from the clock).
TAR_MTIME = 946684800  # 2000-01-01T00:00:00Z
TAR_USER = "bigdata"
TAR_MODE = 0o444

SHARD_TAR_RE = re.compile(r"^(\d+)\.tar$")
SHARD_STATS_RE = re.compile(r"^(\d+)_stats\.json$")

# Columns img2dataset writes after the input columns, in its order.
_META_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("key", pa.string()),
    ("status", pa.string()),
    ("error_message", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("original_width", pa.int32()),
    ("original_height", pa.int32()),
    ("exif", pa.string()),
    ("sha256", pa.string()),
]


def shard_name(shard_id: int) -> str:
    """``00042`` for shard 42, as img2dataset names shards."""
    return f"{shard_id:0{SHARD_ID_DIGITS}d}"


def sample_key(shard_id: int, index: int, samples_per_shard: int) -> str:
    """img2dataset's key: shard id then index in the shard, zero-padded to a fixed width."""
    index_digits = math.ceil(math.log10(samples_per_shard)) if samples_per_shard > 1 else 0
    return f"{shard_id * 10**index_digits + index:0{index_digits + SHARD_ID_DIGITS}d}"


@dataclass
class Sample:
    """One input row of a shard: an image with its caption, or a failure with its reason."""

    index: int
    caption: str | None
    url: str | None = None
    image: bytes | None = None
    image_ext: str = "jpg"
    width: int | None = None
    height: int | None = None
    original_width: int | None = None
    original_height: int | None = None
    status: str = "success"  # or "failed_to_download" / "failed_to_resize", as img2dataset says
    error_message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShardStats:
    """What ``{shard}_stats.json`` holds, in img2dataset's field names."""

    name: str
    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_resize: int = 0
    status_dict: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        # Timings are zero: our writers are deterministic, and a clock in the stats would break that.
        return {
            "count": self.count,
            "successes": self.successes,
            "failed_to_download": self.failed_to_download,
            "failed_to_resize": self.failed_to_resize,
            "duration": 0.0,
            "start_time": 0.0,
            "end_time": 0.0,
            "status_dict": dict(self.status_dict),
        }


def _temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def write_json_atomic(path: Path, obj: Any, indent: int = 4) -> None:
    """img2dataset's JSON layout (indent 4, no trailing newline)."""
    write_bytes_atomic(path, json.dumps(obj, indent=indent).encode("utf-8"))


class ShardWriter:
    """Writes one shard; use as a context manager so a failure removes the temporary files.

    ``extra_columns`` are additional per-sample fields (name -> arrow type) stored in the json and parquet
    before img2dataset's own columns, the way its ``save_additional_columns`` does.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        shard_id: int,
        samples_per_shard: int,
        extra_columns: dict[str, pa.DataType] | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.shard_id = shard_id
        self.samples_per_shard = samples_per_shard
        self.name = shard_name(shard_id)
        self.stats = ShardStats(self.name)
        self._extra = dict(extra_columns or {})
        columns = [*self._extra.items(), ("caption", pa.string()), ("url", pa.string()), *_META_COLUMNS]
        self._schema = pa.schema(columns)
        self._rows: dict[str, list] = {name: [] for name, _ in columns}
        self._tar_path = self.out_dir / f"{self.name}.tar"
        self._tmp_tar = _temp_path(self._tar_path)
        self._tar_file = open(self._tmp_tar, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._tar = tarfile.open(fileobj=self._tar_file, mode="w", format=tarfile.USTAR_FORMAT)
        self._closed = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(self, sample: Sample) -> None:
        if not 0 <= sample.index < self.samples_per_shard:
            raise ValueError(f"sample index {sample.index} outside 0..{self.samples_per_shard - 1}")
        key = sample_key(self.shard_id, sample.index, self.samples_per_shard)
        meta: dict[str, Any] = {name: sample.extra.get(name) for name in self._extra}
        meta.update(
            caption=sample.caption,
            url=sample.url,
            key=key,
            status=sample.status,
            error_message=sample.error_message,
            width=None,
            height=None,
            original_width=None,
            original_height=None,
            exif=None,
            sha256=None,
        )
        self.stats.count += 1
        if sample.image is None or sample.status != "success":
            if sample.status == "failed_to_resize":
                self.stats.failed_to_resize += 1
            else:
                self.stats.failed_to_download += 1
                meta["status"] = "failed_to_download"
            self.stats.status_dict[sample.error_message or meta["status"]] += 1
        else:
            self.stats.successes += 1
            self.stats.status_dict["success"] += 1
            meta.update(
                width=sample.width,
                height=sample.height,
                original_width=sample.original_width,
                original_height=sample.original_height,
                sha256=hashlib.sha256(sample.image).hexdigest(),
            )
            members = {
                sample.image_ext: sample.image,
                "txt": (sample.caption or "").encode("utf-8"),
                "json": json.dumps(meta, indent=4).encode("utf-8"),
            }
            for ext in sorted(members):  # webdataset's TarWriter writes a sample's files in sorted order
                self._add_member(f"{key}.{ext}", members[ext])
        for name in self._rows:
            self._rows[name].append(meta[name])

    def _add_member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = TAR_MTIME
        info.mode = TAR_MODE
        info.uname = info.gname = TAR_USER
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> ShardStats:
        """Finish the shard: tar, parquet, then the stats file that marks it as done."""
        if self._closed:
            return self.stats
        self._tar.close()
        self._tar_file.flush()
        os.fsync(self._tar_file.fileno())
        self._tar_file.close()
        table = pa.Table.from_pydict(self._rows, schema=self._schema)
        parquet_path = self.out_dir / f"{self.name}.parquet"
        tmp_parquet = _temp_path(parquet_path)
        pq.write_table(table, tmp_parquet)
        commit(self._tmp_tar, self._tar_path)
        commit(tmp_parquet, parquet_path)
        write_json_atomic(self.out_dir / f"{self.name}_stats.json", self.stats.to_json())
        self._closed = True
        return self.stats

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._tar.close()
        except (OSError, tarfile.TarError):
            pass
        self._tar_file.close()
        for tmp in (self._tmp_tar, _temp_path(self.out_dir / f"{self.name}.parquet")):
            tmp.unlink(missing_ok=True)


def read_shard_stats(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{shard name: stats}`` for every readable ``*_stats.json`` in a folder, sorted by shard name."""
    found: dict[str, dict[str, Any]] = {}
    folder = Path(out_dir)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = SHARD_STATS_RE.match(path.name)
        if not match:
            continue
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(stats, dict):
            found[match.group(1)] = stats
    return found


def sizes_from_stats(out_dir: str | os.PathLike) -> dict[str, int]:
    """Tar basename -> samples written, for every finished shard (a tar with its stats file)."""
    folder = Path(out_dir)
    return {
        f"{name}.tar": int(stats.get("successes", 0))
        for name, stats in read_shard_stats(folder).items()
        if (folder / f"{name}.tar").is_file()
    }


def write_sizes(out_dir: str | os.PathLike, sizes: dict[str, int]) -> Path:
    """Write ``sizes.json`` (sorted by shard name) atomically; returns its path."""
    path = Path(out_dir) / SIZES_FILE
    write_json_atomic(path, dict(sorted(sizes.items())), indent=2)
    return path
