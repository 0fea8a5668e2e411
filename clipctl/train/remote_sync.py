"""``--remote-sync``: mirror the run folder to s3 (``aws s3 sync``) or any fsspec URL, in the background on rank 0.

What has changed is decided from the local file, never from the remote size alone: ``epoch_latest.pt`` (and
every checkpoint) has the same size at each save, so a size comparison would keep the first upload forever.

- ``s3``: ``aws s3 sync`` uploads a file whose size differs or whose local modification time is newer than the
  remote copy's; a rewritten checkpoint is a new file with a new time.
- ``fsspec``: a manifest ``.clipctl-sync.json`` in the remote folder records the size and modification time
  (ns) each file had when it was uploaded; a file is uploaded when it is not in the manifest or its size or
  time changed. The manifest is written after the files, so an interrupted sync uploads again next time.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError

logger = logging.getLogger("clipctl.train")
MANIFEST = ".clipctl-sync.json"


def check_remote_sync(remote: str, protocol: str) -> None:
    """Refuse, before training starts, a remote the chosen protocol cannot reach (a missing tool or package)."""
    if protocol == "s3":
        if not remote.startswith("s3://"):
            raise ClipctlError(
                f"--remote-sync {remote}: the s3 protocol needs an s3:// URL (or --remote-sync-protocol fsspec)"
            )
        if shutil.which("aws") is None:
            raise ClipctlError(
                "--remote-sync with s3 needs the aws command on PATH: pip install 'clipctl[s3]'"
            )
        return
    import fsspec

    try:
        fsspec.get_filesystem_class(fsspec.utils.get_protocol(remote))
    except ImportError as err:
        raise ClipctlError(
            f"--remote-sync {remote}: {str(err).splitlines()[0]} (pip install 'clipctl[s3]' for s3://)"
        ) from err
    except ValueError as err:
        raise ClipctlError(f"--remote-sync {remote}: {err}") from err


def _local_files(local: Path) -> list[Path]:
    return sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith("."))


def sync_s3(local: Path, remote: str) -> bool:
    hidden = ["--exclude", ".*", "--exclude", "*/.*"]  # temporary files of checkpoints being written
    done = subprocess.run(["aws", "s3", "sync", str(local), remote, *hidden], capture_output=True, text=True)
    if done.returncode != 0:
        logger.warning(f"remote sync to {remote} failed: {(done.stderr or '').strip().splitlines()[-1:]}")
    return done.returncode == 0


class FsspecMirror:
    """Uploads the files of ``local`` that changed since they were last uploaded to ``remote``."""

    def __init__(self, local: Path, remote: str):
        import fsspec

        self.local = local
        self.fs, root = fsspec.core.url_to_fs(remote)
        self.root = root.rstrip("/")
        self.uploaded: dict[str, list[int]] | None = None  # read from the remote manifest on first use

    def _read_manifest(self) -> dict[str, list[int]]:
        try:
            with self.fs.open(f"{self.root}/{MANIFEST}", "rb") as handle:
                data = json.loads(handle.read())
            return {str(k): [int(v[0]), int(v[1])] for k, v in data.items()}
        except (FileNotFoundError, ValueError, TypeError, KeyError, IndexError):
            return {}

    def sync(self) -> bool:
        try:
            if self.uploaded is None:
                self.uploaded = self._read_manifest()
            changed = False
            for path in _local_files(self.local):
                rel = path.relative_to(self.local).as_posix()
                stat = path.stat()
                signature = [stat.st_size, stat.st_mtime_ns]
                if self.uploaded.get(rel) == signature:
                    continue
                self.fs.makedirs(f"{self.root}/{rel}".rsplit("/", 1)[0], exist_ok=True)
                self.fs.put_file(str(path), f"{self.root}/{rel}")
                self.uploaded[rel] = signature
                changed = True
            if changed:
                self.fs.pipe_file(f"{self.root}/{MANIFEST}", json.dumps(self.uploaded).encode())
        except Exception as err:  # noqa: BLE001 - a failed sync must not kill the run; the next one retries
            logger.warning(f"remote sync to {self.root} failed: {err}")
            return False
        return True


def make_syncer(local: Path, remote: str, protocol: str) -> Any:
    """A callable that mirrors ``local`` to ``remote`` once per call and returns whether it succeeded."""
    if protocol == "s3":
        return lambda: sync_s3(local, remote)
    return FsspecMirror(local, remote).sync


class RemoteSync:
    """Mirrors the run folder to ``remote``/RUN_NAME every ``every_seconds`` and once more at :meth:`stop`."""

    def __init__(self, local: Path, remote: str, protocol: str, every_seconds: int):
        self.local, self.remote, self.protocol = local, remote.rstrip("/") + "/" + local.name, protocol
        self.every = max(1, every_seconds)
        self._sync = make_syncer(self.local, self.remote, protocol)
        self._lock = threading.Lock()  # the last sync at stop() may meet a slow one of the loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clipctl-remote-sync", daemon=True)

    def sync_once(self) -> bool:
        with self._lock:
            return self._sync()

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sync_once()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sync_once()
