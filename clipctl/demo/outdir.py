"""The demo's output folder: what counts as "the same demo", what is refused, and the disk check.

A folder is the same demo when its ``demo.json`` names the same parameters (size, seed, generator); re-running
then reuses the generated data and replaces the rest. A folder holding a different demo is replaced only with
``overwrite``. A folder holding anything the demo did not write is never touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from clipctl.data.outdir import check_free_space
from clipctl.demo.settings import MANIFEST, OWN_ENTRIES
from clipctl.errors import ClipctlError
from clipctl.fileio import check_output_target, write_json_atomic


def is_own_entry(name: str) -> bool:
    """Our files, their side files (``X.parts``, ``X.errors.csv``, ``X.partial``) and our ``.X.tmp`` files."""
    if name.startswith(".") and name.endswith(".tmp"):
        return True
    return any(name == own or name.startswith(f"{own}.") for own in OWN_ENTRIES)


def read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(out / MANIFEST, manifest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def prepare_demo_dir(out: Path, parameters: dict[str, Any], *, overwrite: bool) -> bool:
    """Make ``out`` ready for a demo run with ``parameters``; return True when its generated data may be reused.

    Raises ClipctlError, before anything is deleted, when the folder holds a different run (and ``overwrite`` is
    not set) or files the demo did not write.
    """
    check_output_target(out, kind="folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if not entries:
        return False
    foreign = [e.name for e in entries if not is_own_entry(e.name)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" (+{len(foreign) - 3} more)" if len(foreign) > 3 else "")
        raise ClipctlError(
            f"refusing to use {out} for the demo: it holds files the demo did not write ({shown}); "
            "pass another --out"
        )
    manifest = read_manifest(out)
    same_run = manifest is not None and manifest.get("parameters") == parameters
    if not same_run and not overwrite:
        what = "a different demo run" if manifest is not None else "an unfinished or unknown demo run"
        raise ClipctlError(
            f"{out} already holds {what}; pass --overwrite to replace it, or pass another --out"
        )
    # The data generator reuses its own folder when its parameters match, so keep that for a re-run.
    keep = {"data"} if same_run else set()
    for entry in entries:
        if entry.name not in keep:
            _remove(entry)
    return same_run


def check_demo_disk_space(out: Path, needed_bytes: int) -> None:
    check_free_space(out, needed_bytes, "the demo (generated data, checkpoints and results)")
