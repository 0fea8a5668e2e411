"""Output folders of the data jobs: refuse to clobber what we did not write, and check the disk first."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from clipctl.errors import ClipctlError
from clipctl.fileio import check_output_target

# What a shard folder written by clipctl or img2dataset may hold.
SHARD_FOLDER_PATTERNS = (
    r"\d+\.tar",
    r"\d+_stats\.json",
    r"\d+\.parquet",
    r"sizes\.json",
    r"\..+\.tmp",  # our temporary files
    r"_tmp",  # img2dataset's scratch folder
)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def prepare_output_dir(
    out_dir: str | os.PathLike,
    *,
    overwrite: bool,
    own_patterns: Iterable[str] = (),
    keep_existing: bool = False,
    hint: str = "pass --overwrite to replace it",
) -> Path:
    """Create ``out_dir``, or empty it of our own files when ``overwrite`` is set.

    A folder that holds anything we would not have written is never emptied; ``keep_existing`` leaves our files
    in place (resuming).
    """
    out = Path(out_dir)
    patterns = (*SHARD_FOLDER_PATTERNS, *own_patterns)
    check_output_target(out, kind="folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    foreign = [e.name for e in entries if not _matches(e.name, patterns)]
    if entries and not (overwrite or keep_existing):
        raise ClipctlError(f"output folder {out} is not empty; {hint}")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" (+{len(foreign) - 3} more)" if len(foreign) > 3 else "")
        raise ClipctlError(f"refusing to write into {out}: it holds files clipctl did not write ({shown})")
    if overwrite and not keep_existing:
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(out_dir: str | os.PathLike, needed_bytes: int, what: str) -> None:
    """Fail before writing anything when the disk holding ``out_dir`` has less room than ``needed_bytes``."""
    where = _existing_ancestor(Path(out_dir))
    free = shutil.disk_usage(where).free
    if free < needed_bytes:
        raise ClipctlError(
            f"not enough disk space for {what} in {where}: needs about {format_bytes(needed_bytes)}, "
            f"{format_bytes(free)} free"
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
