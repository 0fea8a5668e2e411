"""`clipctl data pack`: local images and captions into webdataset shards in img2dataset's layout, no network.

Sources:
- a folder, searched recursively, of images (jpg, jpeg, png, webp, bmp) each with a caption in a ``.txt`` file of
  the same name next to it; samples are taken in sorted order of their relative paths;
- a CSV/TSV file with an image-path column and a caption column (OpenCLIP's ``--csv-img-key`` /
  ``--csv-caption-key``, defaults ``filepath`` / ``title``); rows are taken in file order. Relative paths are
  looked up next to the CSV file first, then from the current directory.

The output is deterministic: the same input gives byte-identical shards whatever ``processes`` is. Images are
stored as they are (JPEG, PNG and WebP keep their bytes; other formats become PNG) unless ``image_size`` is given,
in which case they are resized like img2dataset does and re-encoded as JPEG. Samples that cannot be used (image
missing or not decodable, caption missing) are skipped, counted in the shard stats and listed in
``pack_errors.csv`` (path, reason).
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from clipctl.data.csv_table import parse_separator
from clipctl.data.images import IMAGE_EXTENSIONS, RESIZE_MODES, UnreadableImage, encode_image_file
from clipctl.data.outdir import check_free_space, prepare_output_dir
from clipctl.data.shards import Sample, ShardWriter, sizes_from_stats, write_sizes
from clipctl.errors import ClipctlError, RunFailure
from clipctl.fileio import write_bytes_atomic

ERRORS_FILE = "pack_errors.csv"
TABLE_SUFFIXES = (".csv", ".tsv")


@dataclass(frozen=True)
class PackItem:
    """One input sample: where its image is, its caption, and the name it is reported under."""

    source: str  # path as the user wrote it (CSV) or relative to the source folder
    path: str | None  # resolved image path; None when it could not be found
    caption: str | None
    problem: str | None = None  # known before reading the image (no caption, ...)


@dataclass
class PackSummary:
    out_dir: str
    num_inputs: int
    num_written: int
    num_shards: int
    sizes_file: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    errors_file: str | None = None


def _read_caption(path: Path) -> tuple[str | None, str | None]:
    try:
        return path.read_text(encoding="utf-8").strip(), None
    except FileNotFoundError:
        return None, f"no caption file {path.name}"
    except (OSError, UnicodeDecodeError) as err:
        return None, f"unreadable caption file {path.name}: {err}"


def items_from_folder(folder: Path) -> list[PackItem]:
    images = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    items = []
    for image in images:
        caption, problem = _read_caption(image.with_suffix(".txt"))
        items.append(PackItem(image.relative_to(folder).as_posix(), str(image), caption, problem))
    return items


def detect_separator(header_line: str, suffix: str) -> str:
    """Tab for .tsv; for anything else, whichever of tab and comma the header line holds more of."""
    if suffix == ".tsv":
        return "\t"
    return "\t" if header_line.count("\t") > header_line.count(",") else ","


def items_from_table(
    table: Path, img_key: str, caption_key: str, separator: str | None = None
) -> list[PackItem]:
    import pandas as pd

    try:
        with open(table, encoding="utf-8") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError) as err:
        raise ClipctlError(f"cannot read {table}: {err}") from err
    if not header.strip():
        raise ClipctlError(f"{table} is empty")
    sep = parse_separator(separator) if separator else detect_separator(header, table.suffix.lower())
    try:
        frame = pd.read_csv(table, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ClipctlError(f"malformed table {table}: {first}") from err
    missing = [key for key in (img_key, caption_key) if key not in frame.columns]
    if missing:
        shown = ", ".join(repr(c) for c in frame.columns[:8])
        sep_name = "tab" if sep == "\t" else repr(sep)
        raise ClipctlError(
            f"{table} has no column {missing[0]!r} (columns: {shown}; separator {sep_name}); "
            "use --img-key/--caption-key or --separator"
        )
    base = table.parent
    items = []
    for source, caption in zip(frame[img_key].tolist(), frame[caption_key].tolist(), strict=True):
        if not source:
            items.append(PackItem(source, None, caption, "empty image path"))
            continue
        candidate = Path(source)
        if not candidate.is_absolute() and (base / candidate).exists():
            candidate = base / candidate
        items.append(PackItem(source, str(candidate), caption))
    return items


def collect_items(
    src: str | os.PathLike,
    img_key: str = "filepath",
    caption_key: str = "title",
    separator: str | None = None,
) -> list[PackItem]:
    src_path = Path(src)
    if not src_path.exists():
        raise ClipctlError(f"no such file or folder: {src_path}")
    if src_path.is_dir():
        items = items_from_folder(src_path)
        if not items:
            exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
            raise ClipctlError(f"no images ({exts}) found under {src_path}")
        return items
    if src_path.suffix.lower() not in TABLE_SUFFIXES:
        raise ClipctlError(f"{src_path} is neither a folder nor a .csv/.tsv file")
    items = items_from_table(src_path, img_key, caption_key, separator)
    if not items:
        raise ClipctlError(f"{src_path} has a header but no rows")
    return items


def _pack_shard(
    out_dir: str,
    shard_id: int,
    items: list[PackItem],
    samples_per_shard: int,
    image_size: int | None,
    resize_mode: str,
    quality: int,
) -> list[tuple[str, str]]:
    skipped: list[tuple[str, str]] = []
    with ShardWriter(out_dir, shard_id, samples_per_shard) as writer:
        for index, item in enumerate(items):
            sample = Sample(index=index, caption=item.caption, url=item.source)
            if item.problem is not None or item.path is None:
                sample.status, sample.error_message = "failed_to_download", item.problem or "image not found"
            else:
                try:
                    data = Path(item.path).read_bytes()
                except OSError as err:
                    sample.status, sample.error_message = (
                        "failed_to_download",
                        f"cannot read image: {err.strerror}",
                    )
                else:
                    try:
                        encoded = encode_image_file(data, image_size, resize_mode, quality)
                    except UnreadableImage as err:
                        sample.status, sample.error_message = (
                            "failed_to_resize",
                            f"not a readable image: {err}",
                        )
                    else:
                        sample.image, sample.image_ext = encoded.data, encoded.ext
                        sample.width, sample.height = encoded.width, encoded.height
                        sample.original_width, sample.original_height = (
                            encoded.original_width,
                            encoded.original_height,
                        )
            if sample.error_message is not None:
                skipped.append((item.source, sample.error_message))
            writer.add(sample)
    return skipped


def _estimate_bytes(items: list[PackItem], image_size: int | None) -> int:
    per_sample_overhead = 3 * 1024  # three tar headers with padding, the json, the parquet row
    if image_size is not None:
        payload = len(items) * int(0.5 * image_size * image_size)
    else:
        payload = 0
        for item in items:
            try:
                payload += os.stat(item.path).st_size if item.path else 0
            except OSError:
                pass
    return int(1.1 * (payload + per_sample_overhead * len(items))) + (1 << 20)


def _write_errors(path: Path, skipped: list[tuple[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(skipped)
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


def pack_dataset(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    img_key: str = "filepath",
    caption_key: str = "title",
    separator: str | None = None,
    samples_per_shard: int = 10_000,
    image_size: int | None = None,
    resize_mode: str = "border",
    encode_quality: int = 95,
    processes: int = 1,
    overwrite: bool = False,
) -> PackSummary:
    """Pack ``src`` (folder or CSV/TSV) into shards under ``out_dir``; see the module docstring."""
    if samples_per_shard < 1:
        raise ClipctlError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    if processes < 1:
        raise ClipctlError(f"--processes must be at least 1, got {processes}")
    if resize_mode not in RESIZE_MODES:
        raise ClipctlError(f"unknown resize mode {resize_mode!r}; choose from {', '.join(RESIZE_MODES)}")
    if image_size is not None and image_size < 1:
        raise ClipctlError(f"--image-size must be positive, got {image_size}")
    if not 0 <= encode_quality <= 100:
        raise ClipctlError(f"--encode-quality must be between 0 and 100, got {encode_quality}")
    items = collect_items(src, img_key, caption_key, separator)
    out = Path(out_dir)
    if out.resolve() == Path(src).resolve():
        raise ClipctlError("the output folder must not be the source folder")
    check_free_space(out, _estimate_bytes(items, image_size), "the shards")
    prepare_output_dir(out, overwrite=overwrite, own_patterns=[ERRORS_FILE.replace(".", r"\.")])

    jobs = [
        (str(out), shard_id, items[first : first + samples_per_shard], samples_per_shard, image_size, resize_mode,
         encode_quality)
        for shard_id, first in enumerate(range(0, len(items), samples_per_shard))
    ]  # fmt: skip
    workers = min(processes, len(jobs))
    try:
        if workers == 1:
            results = [_pack_shard(*job) for job in jobs]
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                results = list(pool.map(_pack_shard, *zip(*jobs, strict=True)))
    except BrokenProcessPool as err:
        raise RunFailure(f"a worker process died while packing into {out}; rerun with --processes 1") from err
    except OSError as err:
        raise RunFailure(f"writing shards to {out} failed: {err}") from err
    skipped = [entry for result in results for entry in result]
    sizes = sizes_from_stats(out)
    sizes_file = write_sizes(out, sizes)
    errors_file = None
    if skipped:
        errors_file = out / ERRORS_FILE
        _write_errors(errors_file, skipped)
    num_written = sum(sizes.values())
    if num_written == 0:
        raise RunFailure(f"none of the {len(items)} samples could be packed; reasons in {errors_file}")
    return PackSummary(
        out_dir=str(out),
        num_inputs=len(items),
        num_written=num_written,
        num_shards=len(jobs),
        sizes_file=str(sizes_file),
        skipped=skipped,
        errors_file=str(errors_file) if errors_file else None,
    )
