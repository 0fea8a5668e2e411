"""Atomic writes: every file or folder that must survive a crash is written here, and nowhere else.

A file goes to a temporary name in its target's folder, is flushed to disk, then renamed over the target, so
a crash leaves either the old file or the new one, never half of either. A folder is staged beside its
target the same way and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def check_output_target(path: str | os.PathLike, *, what: str = "--out", kind: str | None = None) -> Path:
    """Refuse, before any work, an output that can never be written: one of its parent folders is a file, or
    ``path`` itself exists as the wrong ``kind`` (``"file"`` or ``"folder"``; None accepts either).

    Raises ClipctlError (one line, exit 2) naming the flag (``what``); returns the path.
    """
    from clipctl.errors import ClipctlError

    path = Path(path).expanduser()
    for parent in path.absolute().parents:  # the closest existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise ClipctlError(f"{what} {path}: {parent} is a file, not a folder")
            break
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ClipctlError(f"{what} {path} exists and is a file, not a folder")
    if kind == "file" and path.is_dir():
        raise ClipctlError(f"{what} {path} is a folder; give a file name")
    return path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def share(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give ``path`` the usual umask permissions: mkstemp/mkdtemp create 0600/0700, which is wrong for
    configs, weights and folders meant to be read by others."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def temp_sibling(path: str | os.PathLike, *, suffix: str = ".tmp") -> Path:
    """A fresh, empty temporary file beside ``path`` (same file system, so the final rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def commit(tmp: str | os.PathLike, path: str | os.PathLike, *, shared: bool = True) -> Path:
    """Rename a finished temporary file over ``path`` (flushed to disk first)."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    if shared:
        share(tmp)
    os.replace(tmp, path)
    return Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike, *, shared: bool = True, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (with any library that takes a file name); it
    replaces ``path`` when the block ends normally and is removed when it raises."""
    tmp = temp_sibling(path, suffix=suffix)
    try:
        yield tmp
        commit(tmp, path, shared=shared)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, *, shared: bool = True) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` when the block ends normally."""
    with atomic_path(path, shared=shared) as tmp, open(tmp, "wb") as handle:
        yield handle


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, shared: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, shared=shared) as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Strict JSON (``NaN`` is refused, not written) with a trailing newline, atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def write_with(path: str | os.PathLike, writer: Callable[[Path], object], *, shared: bool = True) -> Path:
    """``writer(tmp_path)`` writes the content (``torch.save``, ``pq.write_table``, ``image.save`` ...); the
    result replaces ``path`` atomically."""
    with atomic_path(path, shared=shared, suffix=Path(path).suffix + ".tmp") as tmp:
        writer(tmp)
    return Path(path)


def link_atomic(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Give ``source`` a second name ``path`` (a hard link where the file system has them, else a copy),
    appearing atomically and replacing whatever ``path`` was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)
    return path


@contextmanager
def atomic_folder(folder: str | os.PathLike, *, merge: bool = False) -> Iterator[Path]:
    """A staging folder beside ``folder`` to write the new content into.

    When the block ends normally the stage becomes ``folder``: renamed into place when ``folder`` does not
    exist; otherwise, with ``merge``, each entry of the stage replaces its namesake in ``folder`` (other
    files stay: a git clone of a Hub repo keeps its ``.git``), and without it the old folder is swapped out
    whole and deleted. When the block raises, the stage is removed and ``folder`` is untouched.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.clipctl-tmp-"))
    try:
        yield stage
        for entry in stage.rglob("*"):
            share(entry, folder=entry.is_dir())
        share(stage, folder=True)
        _publish(stage, folder, merge=merge)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _publish(stage: Path, folder: Path, *, merge: bool) -> None:
    if not folder.exists():
        os.rename(stage, folder)
    elif merge:
        for entry in stage.iterdir():
            target = folder / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    else:
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.clipctl-old-"))
        os.replace(folder, old / folder.name)
        os.rename(stage, folder)
        shutil.rmtree(old, ignore_errors=True)
