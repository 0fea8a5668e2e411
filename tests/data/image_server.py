"""A local HTTP server for img2dataset tests: serves a folder on 127.0.0.1 from a thread, stopped on exit."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextlib.contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """Yield the base URL of a server for ``folder``; the server is shut down when the block ends."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def write_test_images(folder: Path, n_good: int, n_corrupt: int) -> tuple[list[str], list[str]]:
    """Small JPEGs named good_i.jpg and files named corrupt_i.jpg that are not images; returns both name lists."""
    folder.mkdir(parents=True, exist_ok=True)
    good, corrupt = [], []
    for i in range(n_good):
        pixels = np.random.default_rng(i).integers(0, 255, size=(24 + i, 32, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        (folder / f"good_{i}.jpg").write_bytes(buf.getvalue())
        good.append(f"good_{i}.jpg")
    for i in range(n_corrupt):
        (folder / f"corrupt_{i}.jpg").write_bytes(b"\xff\xd8 this is not a jpeg " * 8)
        corrupt.append(f"corrupt_{i}.jpg")
    return good, corrupt
