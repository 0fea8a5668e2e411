"""Webdataset shard specs: expansion of ``{a..b}`` braces and ``::``-joined sources, per-source sampling weights,
sample counts from ``sizes.json`` / ``__len__``, and existence checks that name the first missing shard.

A spec is a string such as ``'shards/{00000..00099}.tar::/other/{000..009}.tar'`` or a list of such strings (each
element is one more source). A source that is an existing directory stands for every ``*.tar`` in it; a local
glob (``'shards/*.tar'``, quoted so that clipctl and not the shell expands it) stands for the files it matches,
in sorted order. Braces are expanded first, so ``'{train,extra}/*.tar'`` works too.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from typing import BinaryIO

from braceexpand import braceexpand

from clipctl.errors import ClipctlError

SIZES_FILE = "sizes.json"
LEN_FILE = "__len__"
SOURCE_SEPARATOR = "::"
_REMOTE_PREFIXES = ("pipe:", "file:", "http://", "https://", "s3://", "gs://", "hf://", "ais://")


def is_remote(shard: str) -> bool:
    return shard.startswith(_REMOTE_PREFIXES) or "://" in shard


def split_sources(spec: str | Sequence[str]) -> list[str]:
    """The sources of a spec, in order (``::`` splits a string; a list contributes its elements)."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    sources: list[str] = []
    for part in parts:
        for source in str(part).split(SOURCE_SEPARATOR):
            source = source.strip()
            if not source:
                raise ClipctlError(f"shard spec {_show(spec)} has an empty source (check for a stray '::')")
            sources.append(source)
    if not sources:
        raise ClipctlError("shard spec is empty")
    return sources


def open_shard(url: str) -> BinaryIO:
    """A binary stream of one shard: a local file, or a URL / ``pipe:`` command through webdataset's gopen
    (``http(s)://`` via curl, ``s3://`` and other schemes via their command line tools). A remote shard that
    cannot be fetched (404, a failing command) raises OSError at the latest when the stream is closed."""
    if is_remote(url):
        import webdataset as wds

        return wds.gopen(url, "rb")
    return open(url, "rb")


def is_glob(source: str) -> bool:
    return not is_remote(source) and glob.has_magic(source)


def expand_source(source: str) -> list[str]:
    if not is_remote(source) and os.path.isdir(source):
        return sorted(os.path.join(source, f) for f in os.listdir(source) if f.endswith(".tar"))
    shards: list[str] = []
    for item in braceexpand(source):
        if is_glob(item):
            shards.extend(sorted(p for p in glob.glob(os.path.expanduser(item)) if os.path.isfile(p)))
        else:
            shards.append(item)
    return shards


def expand_shard_spec(
    spec: str | Sequence[str], upsampling_factors: str | Sequence[float] | None = None
) -> tuple[list[str], list[float] | None]:
    """Expand a spec into shard paths/URLs and, when factors are given, one sampling weight per shard.

    ``upsampling_factors`` is ``'1::2'`` style (one number per source); each source's factor is repeated for each
    of its shards, so a factor scales how often that source's shards are drawn relative to its size.
    """
    sources = split_sources(spec)
    factors: list[float] | None = None
    if upsampling_factors is not None:
        raw = (
            upsampling_factors.split(SOURCE_SEPARATOR)
            if isinstance(upsampling_factors, str)
            else upsampling_factors
        )
        try:
            factors = [float(f) for f in raw]
        except ValueError as exc:
            raise ClipctlError(
                f"upsampling factors {upsampling_factors!r} must be numbers joined by '::'"
            ) from exc
        if len(factors) != len(sources):
            raise ClipctlError(
                f"--train-data-upsampling-factors has {len(factors)} value(s) but --train-data has {len(sources)} "
                f"source(s) joined by '::'; give one factor per source"
            )
        if any(f < 0 for f in factors) or not any(f > 0 for f in factors):
            raise ClipctlError(
                f"upsampling factors {upsampling_factors!r} must be >= 0 with at least one > 0"
            )
    shards: list[str] = []
    weights: list[float] = []
    for i, source in enumerate(sources):
        expanded = expand_source(source)
        if not expanded:
            what = (
                "directory with no .tar files"
                if os.path.isdir(source)
                else "glob that matches no file"
                if is_glob(source)
                else "pattern"
            )
            raise ClipctlError(f"shard spec {source!r} ({what}) expands to no shards")
        shards.extend(expanded)
        if factors is not None:
            weights.extend([factors[i]] * len(expanded))
    return shards, (weights if factors is not None else None)


def check_shards_exist(shards: Sequence[str]) -> None:
    """Raise naming the first local shard that is not a readable file (remote URLs are not checked)."""
    if not shards:
        raise ClipctlError("the shard list expands to no shards")
    missing = [s for s in shards if not is_remote(s) and not os.path.isfile(s)]
    if missing:
        more = f" (and {len(missing) - 1} more of {len(shards)})" if len(missing) > 1 else ""
        raise ClipctlError(f"shard not found: {missing[0]}{more}")


def _folder_sizes(folder: str) -> tuple[dict[str, int] | None, int | None]:
    sizes_path = os.path.join(folder, SIZES_FILE)
    if os.path.isfile(sizes_path):
        try:
            with open(sizes_path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ClipctlError(f"cannot read {sizes_path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ClipctlError(f"{sizes_path} must map shard file names to sample counts")
        return {str(k): int(v) for k, v in data.items()}, None
    len_path = os.path.join(folder, LEN_FILE)
    if os.path.isfile(len_path):
        try:
            with open(len_path) as f:
                return None, int(f.read().strip())
        except (OSError, ValueError) as exc:
            raise ClipctlError(f"cannot read {len_path}: {exc}") from exc
    return None, None


def read_sizes(shards: Sequence[str]) -> int | None:
    """Total sample count of ``shards`` from the size files next to them, or None if any shard is unknown.

    Each folder is looked up separately: ``sizes.json`` (shard basename -> count) wins; otherwise a ``__len__``
    file holds the total for the folder's shards (as OpenCLIP reads it, so it assumes the spec uses them all).
    """
    if not shards:
        return None
    by_folder: dict[str, list[str]] = {}
    for shard in dict.fromkeys(shards):  # unique, order kept
        if is_remote(shard):
            return None
        by_folder.setdefault(os.path.dirname(shard), []).append(os.path.basename(shard))
    total = 0
    for folder, names in by_folder.items():
        per_shard, folder_total = _folder_sizes(folder or ".")
        if per_shard is not None:
            if any(name not in per_shard for name in names):
                return None
            total += sum(per_shard[name] for name in names)
        elif folder_total is not None:
            total += folder_total
        else:
            return None
    return total


def _show(spec: str | Sequence[str]) -> str:
    return repr(spec) if isinstance(spec, str) else repr(list(spec))
