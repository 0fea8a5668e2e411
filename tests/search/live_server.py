"""A real `clipctl serve` for tests (uvicorn on 127.0.0.1, an ephemeral port, in a background thread), and raw
HTTP requests that no client library normalises (so ``..`` and odd encodings reach the server as sent)."""

from __future__ import annotations

import socket

from clipctl.search.server import running_server as live_server

__all__ = ["live_server", "raw_get"]


def raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` byte for byte; returns (status, body)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
