"""``--remote-sync``: copy the run folder to s3 (``aws s3 sync``) or any fsspec URL, in the background on rank 0."""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path

logger = logging.getLogger("clipctl.train")


def sync_once(local: Path, remote: str, protocol: str) -> bool:
    if protocol == "s3":
        # epoch_latest.pt is rewritten constantly; the numbered files carry the same state
        cmd = ["aws", "s3", "sync", str(local), remote, "--exclude", "*epoch_latest.pt"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            logger.warning(f"remote sync to {remote} failed: {(done.stderr or '').strip().splitlines()[-1:]}")
        return done.returncode == 0
    import fsspec

    fs, root = fsspec.core.url_to_fs(remote)
    try:
        for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith(".")):
            target = f"{root.rstrip('/')}/{path.relative_to(local).as_posix()}"
            if fs.exists(target) and fs.size(target) == path.stat().st_size and path.name != "metrics.jsonl":
                continue
            fs.put_file(str(path), target)
    except Exception as err:  # noqa: BLE001 - a failed sync must not kill the run
        logger.warning(f"remote sync to {remote} failed: {err}")
        return False
    return True


class RemoteSync:
    def __init__(self, local: Path, remote: str, protocol: str, every_seconds: int):
        self.local, self.remote, self.protocol = local, remote.rstrip("/") + "/" + local.name, protocol
        self.every = max(1, every_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clipctl-remote-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            sync_once(self.local, self.remote, self.protocol)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        sync_once(self.local, self.remote, self.protocol)
