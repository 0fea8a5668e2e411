"""`clipctl data inspect`: what a set of webdataset shards holds, and what is wrong with it.

Reads every tar from start to end (so truncation is found), groups members into samples the way webdataset
does (consecutive members sharing the part of the name before the first dot), and compares the counts with
``sizes.json`` and img2dataset's ``*_stats.json`` where they exist. ``check_images`` also decodes every image.

Problems (a shard that does not read, samples without an image or caption, undecodable images, counts that
disagree with ``sizes.json`` or the stats) are listed in ``InspectReport.problems``; missing side files are
only ``notes``.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections import Counter
from dataclasses import asdict, dataclass, field

from clipctl.data.shardlist import SIZES_FILE, check_shards_exist, expand_shard_spec, is_remote, open_shard

IMAGE_EXTS = frozenset(
    {"jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm", "pbm", "pnm", "tif", "tiff", "gif"}
)
CAPTION_EXTS = frozenset({"txt", "text", "caption"})
_KEY_RE = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key/extension split
MAX_LISTED = 50  # unreadable samples listed per report; all are counted


@dataclass
class ShardReport:
    path: str
    samples: int = 0
    extensions: dict[str, int] = field(default_factory=dict)  # extension -> samples having it
    missing_image: int = 0
    missing_caption: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, reason), at most MAX_LISTED
    num_unreadable: int = 0
    error: str | None = None  # the tar itself could not be read to the end
    sizes_json: int | None = None  # this shard's entry in sizes.json
    sizes_json_found: bool = False  # a readable sizes.json sits next to the shard
    stats_successes: int | None = None  # from {shard}_stats.json


@dataclass
class InspectReport:
    spec: str
    shards: list[ShardReport]
    checked_images: bool
    num_samples: int = 0
    extensions: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[str, str]] = field(default_factory=list)  # (key, caption)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _decode_image(data: bytes) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as err:  # noqa: BLE001 - any decoder failure makes the sample unusable
        return f"{type(err).__name__}: {err}"
    return None


class _SampleScanner:
    """Accumulates members into samples and a shard report."""

    def __init__(self, report: ShardReport, check_images: bool, examples: list, max_examples: int):
        self.report = report
        self.check_images = check_images
        self.examples = examples
        self.max_examples = max_examples
        self.key: str | None = None
        self.members: dict[str, bytes | None] = {}
        self.extensions: Counter = Counter()

    def add(self, name: str, data: bytes | None) -> None:
        match = _KEY_RE.match(name)
        if not match:
            return
        key, ext = match.group(1), match.group(2).lower()
        if key != self.key:
            self.flush()
            self.key = key
        self.members[ext] = data

    def _unreadable(self, key: str, reason: str) -> None:
        self.report.num_unreadable += 1
        if len(self.report.unreadable) < MAX_LISTED:
            self.report.unreadable.append((key, reason))

    def flush(self) -> None:
        if self.key is None:
            return
        key, members = self.key, self.members
        self.report.samples += 1
        self.extensions.update(members.keys())
        images = [ext for ext in members if ext in IMAGE_EXTS]
        captions = [ext for ext in members if ext in CAPTION_EXTS]
        if not images:
            self.report.missing_image += 1
        if not captions:
            self.report.missing_caption += 1
        if self.check_images:
            for ext in images:
                reason = _decode_image(members[ext] or b"")
                if reason:
                    self._unreadable(f"{key}.{ext}", reason)
        for ext in captions:
            try:
                caption = (members[ext] or b"").decode("utf-8")
            except UnicodeDecodeError:
                self._unreadable(f"{key}.{ext}", "caption is not UTF-8")
                continue
            if len(self.examples) < self.max_examples:
                self.examples.append((key, caption.strip()))
            break
        self.key, self.members = None, {}


def _scan_tar(path: str, check_images: bool, examples: list, max_examples: int) -> ShardReport:
    report = ShardReport(path)
    scanner = _SampleScanner(report, check_images, examples, max_examples)
    wanted = IMAGE_EXTS | CAPTION_EXTS if check_images else CAPTION_EXTS
    try:
        with open_shard(path) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                ext = member.name.rsplit(".", 1)[-1].lower()
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                if len(data) != member.size:
                    raise tarfile.ReadError(f"member {member.name} is cut short")
                scanner.add(member.name, data if ext in wanted else None)
        scanner.flush()
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        # The sample being read when the tar broke may be missing members: it is not counted.
        report.error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    report.extensions = dict(sorted(scanner.extensions.items()))
    return report


def _folder_side_files(folder: str) -> tuple[dict[str, int] | None, str | None]:
    path = os.path.join(folder, SIZES_FILE)
    if not os.path.isfile(path):
        return None, None
    try:
        with open(path) as f:
            data = json.load(f)
        return {str(k): int(v) for k, v in data.items()}, None
    except (OSError, ValueError, AttributeError, TypeError) as err:
        return None, f"{path} is unreadable: {err}"


def _stats_successes(shard: str) -> int | None:
    stem = shard[: -len(".tar")] if shard.endswith(".tar") else shard
    try:
        with open(f"{stem}_stats.json") as f:
            return int(json.load(f)["successes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def inspect_shards(spec: str, *, check_images: bool = False, max_examples: int = 5) -> InspectReport:
    """Read the shards of ``spec`` (a tar, a brace pattern, a folder, or ``::``-joined sources) and report."""
    shards, _ = expand_shard_spec(spec)
    check_shards_exist(shards)  # local ones; a remote shard that cannot be fetched is reported as unreadable
    report = InspectReport(spec=spec, shards=[], checked_images=check_images)
    examples: list[tuple[str, str]] = []
    sizes_by_folder: dict[str, dict[str, int] | None] = {}
    for shard in shards:
        folder = os.path.dirname(shard) or "."
        if is_remote(shard):
            folder = "remote"
            if folder not in sizes_by_folder:
                sizes_by_folder[folder] = None
                report.notes.append(
                    f"{SIZES_FILE} is not read for remote shards: training needs --train-num-samples"
                )
        if folder not in sizes_by_folder:
            sizes, error = _folder_side_files(folder)
            sizes_by_folder[folder] = sizes
            if error:
                report.problems.append(error)
            elif sizes is None:
                report.notes.append(f"no {SIZES_FILE} in {folder}: training needs --train-num-samples")
        shard_report = _scan_tar(shard, check_images, examples, max_examples)
        sizes = sizes_by_folder[folder]
        if sizes is not None:
            shard_report.sizes_json_found = True
            shard_report.sizes_json = sizes.get(os.path.basename(shard))
        shard_report.stats_successes = None if is_remote(shard) else _stats_successes(shard)
        report.shards.append(shard_report)
    report.examples = examples
    _summarize(report)
    return report


def _summarize(report: InspectReport) -> None:
    extensions: Counter = Counter()
    for shard in report.shards:
        name = os.path.basename(shard.path)
        report.num_samples += shard.samples
        extensions.update(shard.extensions)
        if shard.error:
            report.problems.append(
                f"{name}: cannot be read to the end ({shard.error}); {shard.samples} samples read"
            )
        if shard.missing_image:
            report.problems.append(f"{name}: {shard.missing_image} samples have no image")
        if shard.missing_caption:
            report.problems.append(f"{name}: {shard.missing_caption} samples have no caption")
        if shard.num_unreadable:
            report.problems.append(f"{name}: {shard.num_unreadable} unreadable images or captions")
        if shard.sizes_json_found and shard.sizes_json is None:
            report.problems.append(f"{name}: missing from {SIZES_FILE}")
        elif shard.sizes_json is not None and shard.sizes_json != shard.samples:
            report.problems.append(
                f"{name}: {SIZES_FILE} says {shard.sizes_json} samples, the tar holds {shard.samples}"
            )
        if shard.stats_successes is not None and shard.stats_successes != shard.samples:
            report.problems.append(
                f"{name}: its _stats.json counts {shard.stats_successes} successes, the tar holds {shard.samples}"
            )
    report.extensions = dict(sorted(extensions.items()))
