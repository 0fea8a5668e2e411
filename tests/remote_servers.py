"""An S3-compatible server on 127.0.0.1 for remote-storage tests (moto's server mode), started by the test and
stopped when it ends; the HTTP one is ``tests.data.image_server.serve_directory``. Nothing leaves this machine."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BUCKET = "clipctl-test"


@contextlib.contextmanager
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Start moto's S3 server and point boto3, s3fs and the `aws` command (the venv's, first on PATH) at it
    through the environment; yields the endpoint URL. The bucket ``BUCKET`` exists."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    s3fs.S3FileSystem.clear_instance_cache()  # cached clients would still point at an earlier server
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def upload(folder: Path, prefix: str, names: list[str]) -> None:
    import boto3

    client = boto3.client("s3")
    for name in names:
        client.upload_file(str(folder / name), BUCKET, f"{prefix}/{name}")


def read_object(key: str) -> bytes:
    import boto3

    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
