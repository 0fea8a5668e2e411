"""`clipctl data build`: download a URL list into webdataset shards with img2dataset, and judge the result.

img2dataset exits normally however many downloads failed (and on Ctrl-C), so success is read from the
``*_stats.json`` files it writes per shard: the whole folder's counts are summed, ``sizes.json`` is written
from them, and the build fails when nothing, or less than ``min_success_rate`` of the samples, succeeded.

The default ``min_success_rate`` is 0.2: web-scale URL lists lose a third to a half of their links over the
years, so a lower bar than that would fail healthy builds, while a broken setup (no network, a proxy, the wrong
URL column) gives close to nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipctl.data.images import RESIZE_MODES
from clipctl.data.outdir import check_free_space, prepare_output_dir
from clipctl.data.shardlist import SIZES_FILE
from clipctl.data.shards import read_shard_stats, sizes_from_stats, write_sizes
from clipctl.errors import ClipctlError, RunFailure

DEFAULT_MIN_SUCCESS_RATE = 0.2
# Suffix -> img2dataset input_format.
INPUT_FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv.gz",
    ".tsv": "tsv",
    ".tsv.gz": "tsv.gz",
    ".txt": "txt",
    ".txt.gz": "txt.gz",
    ".parquet": "parquet",
}


class BuildFailed(RunFailure):
    """Too few downloads succeeded; ``summary`` says what happened."""

    def __init__(self, message: str, summary: BuildSummary):
        super().__init__(message)
        self.summary = summary


class BuildInterrupted(RunFailure):
    exit_code = 130


@dataclass
class BuildSummary:
    out_dir: str
    num_shards: int
    count: int
    successes: int
    failed_to_download: int
    failed_to_resize: int
    reasons: list[tuple[str, int]] = field(
        default_factory=list
    )  # failure message -> count, most common first
    sizes_file: str | None = None

    @property
    def success_rate(self) -> float:
        return self.successes / self.count if self.count else 0.0


@dataclass(frozen=True)
class UrlListInfo:
    path: Path
    input_format: str
    url_col: str
    caption_col: str | None
    num_rows: int | None


def _input_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(INPUT_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return INPUT_FORMATS[suffix]
    raise ClipctlError(f"cannot tell the format of {path}: expected one of {', '.join(INPUT_FORMATS)}")


def _columns_and_rows(path: Path, input_format: str) -> tuple[list[str], int | None]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if input_format == "parquet":
        meta = pq.read_metadata(path)
        return list(meta.schema.names), meta.num_rows
    delimiter = "\t" if input_format.startswith("tsv") else ","
    if input_format.startswith("txt"):
        names = ["url"]
    else:
        with pa.input_stream(str(path), compression="detect") as stream:
            reader = pa_csv.open_csv(stream, parse_options=pa_csv.ParseOptions(delimiter=delimiter))
            names = list(reader.schema.names)
    opener = gzip.open if input_format.endswith(".gz") else open
    with opener(path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return names, max(0, lines - (0 if input_format.startswith("txt") else 1))


def inspect_url_list(
    path: str | os.PathLike, url_col: str = "url", caption_col: str | None = None
) -> UrlListInfo:
    """Check the URL list before img2dataset sees it: it exists, its format is known, its columns are there.

    ``caption_col=None`` uses a ``caption`` column when there is one.
    """
    url_list = Path(path)
    if not url_list.is_file():
        raise ClipctlError(f"no such URL list: {url_list}")
    input_format = _input_format(url_list)
    try:
        columns, num_rows = _columns_and_rows(url_list, input_format)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ClipctlError(f"cannot read {url_list}: {first}") from err
    if input_format.startswith("txt"):
        if caption_col is not None:
            raise ClipctlError(
                f"{url_list} is a plain list of URLs; it has no caption column {caption_col!r}"
            )
        return UrlListInfo(url_list, input_format, "url", None, num_rows)
    shown = ", ".join(repr(c) for c in columns[:8])
    if url_col not in columns:
        raise ClipctlError(f"{url_list} has no URL column {url_col!r} (columns: {shown}); use --url-col")
    if caption_col is not None and caption_col not in columns:
        raise ClipctlError(
            f"{url_list} has no caption column {caption_col!r} (columns: {shown}); use --caption-col"
        )
    if caption_col is None and "caption" in columns:
        caption_col = "caption"
    return UrlListInfo(url_list, input_format, url_col, caption_col, num_rows)


def _estimate_bytes(num_rows: int | None, image_size: int, resize_mode: str) -> int:
    if not num_rows:
        return 1 << 20
    per_image = 150_000 if resize_mode == "no" else int(0.35 * image_size * image_size)
    return int(1.2 * num_rows * (per_image + 3 * 1024)) + (1 << 20)


@contextlib.contextmanager
def _chatter_to(target: str) -> Iterator[None]:
    """Send img2dataset's output (its own and its spawned processes') to stderr (``"stderr"``) or nowhere
    (``"null"``); stdout stays ours."""
    sys.stdout.flush()
    sys.stderr.flush()
    fds = (1, 2) if target == "null" else (1,)
    saved = {fd: os.dup(fd) for fd in fds}
    with contextlib.ExitStack() as stack:
        try:
            if target == "null":
                sink = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115 - closed by the stack
                for fd in fds:
                    os.dup2(sink.fileno(), fd)
                stack.enter_context(contextlib.redirect_stdout(sink))
                stack.enter_context(contextlib.redirect_stderr(sink))
            else:
                os.dup2(2, 1)
                stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def summarize_folder(out_dir: str | os.PathLike) -> BuildSummary:
    """Sum the ``*_stats.json`` files of a shard folder."""
    stats = read_shard_stats(out_dir)
    reasons: Counter = Counter()
    for shard in stats.values():
        for message, n in (shard.get("status_dict") or {}).items():
            if message != "success":
                reasons[message] += int(n)
    return BuildSummary(
        out_dir=str(out_dir),
        num_shards=len(stats),
        count=sum(int(s.get("count", 0)) for s in stats.values()),
        successes=sum(int(s.get("successes", 0)) for s in stats.values()),
        failed_to_download=sum(int(s.get("failed_to_download", 0)) for s in stats.values()),
        failed_to_resize=sum(int(s.get("failed_to_resize", 0)) for s in stats.values()),
        reasons=reasons.most_common(),
    )


@dataclass
class BuildOptions:
    """How ``build_shards`` runs img2dataset, and how much of the download must succeed.

    ``caption_col=None`` uses a ``caption`` column when there is one. ``img2dataset_output`` is ``"stderr"`` or
    ``"null"`` (its progress lines never reach stdout).
    """

    url_col: str = "url"
    caption_col: str | None = None
    image_size: int = 256
    resize_mode: str = "border"
    processes: int = 1
    threads: int = 32
    samples_per_shard: int = 10_000
    encode_quality: int = 95
    retries: int = 0
    timeout: int = 10
    incremental: bool = False
    overwrite: bool = False
    min_success_rate: float = DEFAULT_MIN_SUCCESS_RATE
    img2dataset_output: str = "stderr"

    def check(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ClipctlError(
                f"unknown resize mode {self.resize_mode!r}; choose from {', '.join(RESIZE_MODES)}"
            )
        for name, value, low in (
            ("--image-size", self.image_size, 1),
            ("--processes", self.processes, 1),
            ("--threads", self.threads, 1),
            ("--samples-per-shard", self.samples_per_shard, 1),
            ("--timeout", self.timeout, 1),
            ("--retries", self.retries, 0),
        ):
            if value < low:
                raise ClipctlError(f"{name} must be at least {low}, got {value}")
        if not 0 <= self.encode_quality <= 100:
            raise ClipctlError(f"--encode-quality must be between 0 and 100, got {self.encode_quality}")
        if not 0.0 <= self.min_success_rate <= 1.0:
            raise ClipctlError(f"--min-success-rate must be between 0 and 1, got {self.min_success_rate}")
        if self.incremental and self.overwrite:
            raise ClipctlError("--incremental and --overwrite exclude each other")


def _prepare_out_dir(out: Path, info: UrlListInfo, options: BuildOptions) -> None:
    needed = _estimate_bytes(info.num_rows, options.image_size, options.resize_mode)
    check_free_space(out, needed, "the downloaded images")
    prepare_output_dir(
        out,
        overwrite=options.overwrite,
        keep_existing=options.incremental,
        hint="pass --incremental to resume into it or --overwrite to replace it",
    )
    # img2dataset reads every *.json in the folder as a shard's stats and cannot parse our sizes.json.
    (out / SIZES_FILE).unlink(missing_ok=True)


def _import_img2dataset_download() -> Callable[..., Any]:
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = (
        "1"  # before the import: albumentations checks for updates online
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its `import imghdr`
        from img2dataset import download
    return download


def _run_img2dataset(info: UrlListInfo, out: Path, options: BuildOptions) -> None:
    download = _import_img2dataset_download()
    previous_sigint = signal.getsignal(signal.SIGINT)
    try:
        with _chatter_to(options.img2dataset_output):
            download(
                url_list=str(info.path.absolute()),
                output_folder=str(out.absolute()),
                input_format=info.input_format,
                url_col=info.url_col,
                caption_col=info.caption_col,
                output_format="webdataset",
                image_size=options.image_size,
                resize_mode=options.resize_mode,
                processes_count=options.processes,
                thread_count=options.threads,
                number_sample_per_shard=options.samples_per_shard,
                encode_quality=options.encode_quality,
                retries=options.retries,
                timeout=options.timeout,
                incremental_mode="incremental",
                enable_wandb=False,
            )
    except SystemExit as exit_:  # img2dataset's Ctrl-C handler calls sys.exit(0)
        _write_sizes_if_any(out)
        raise BuildInterrupted(
            f"interrupted; finished shards are kept in {out}, rerun with --incremental to resume"
        ) from exit_
    except (ValueError, OSError, KeyError) as err:
        raise RunFailure(f"img2dataset failed: {type(err).__name__}: {err}") from err
    finally:
        signal.signal(signal.SIGINT, previous_sigint)


def _check_success(summary: BuildSummary, out: Path, min_success_rate: float) -> None:
    if summary.count == 0:
        raise BuildFailed(f"img2dataset wrote no shards into {out}", summary)
    if summary.successes == 0:
        raise BuildFailed(f"none of the {summary.count} images could be downloaded", summary)
    if summary.success_rate < min_success_rate:
        raise BuildFailed(
            f"only {summary.successes} of {summary.count} images ({summary.success_rate:.0%}) succeeded, below "
            f"--min-success-rate {min_success_rate:g}",
            summary,
        )


def build_shards(
    url_list: str | os.PathLike, out_dir: str | os.PathLike, options: BuildOptions | None = None
) -> BuildSummary:
    """Run img2dataset on ``url_list`` into ``out_dir`` and return the folder's summary.

    Raises :class:`BuildFailed` (with the summary) when nothing or too little succeeded.
    """
    options = options or BuildOptions()
    options.check()
    info = inspect_url_list(url_list, options.url_col, options.caption_col)
    out = Path(out_dir)
    _prepare_out_dir(out, info, options)
    _run_img2dataset(info, out, options)
    summary = summarize_folder(out)
    summary.sizes_file = _write_sizes_if_any(out)
    _check_success(summary, out, options.min_success_rate)
    return summary


def _write_sizes_if_any(out: Path) -> str | None:
    sizes = sizes_from_stats(out)
    return str(write_sizes(out, sizes)) if sizes else None
