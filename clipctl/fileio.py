"""Atomic file writes: a temporary file in the target's folder, fsynced, then renamed over the target, so a
crash leaves either the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, shared: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically. ``shared`` gives the file the usual umask permissions (mkstemp
    creates 0600, which is wrong for configs and weights meant to be read by others)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if shared:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Strict JSON (``NaN`` is refused, not written) with a trailing newline, atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))
