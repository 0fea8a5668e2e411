"""`--remote-sync`: a checkpoint rewritten with the same size (epoch_latest.pt at every save) is uploaded
again, unchanged files are not, against a local folder (fsspec) and a real S3-compatible server on 127.0.0.1
(moto) through both protocols: fsspec + s3fs, and the `aws s3 sync` command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipctl.train.remote_sync import MANIFEST, FsspecMirror, RemoteSync, sync_s3
from clipctl.train.trainer import run_training
from tests.remote_servers import BUCKET, read_object, s3_server
from tests.train.engine_helpers import write_colour_shards, write_tiny_model
from tests.train.test_trainer import tiny_config

SIZE = 4096


def _write_checkpoint(run: Path, name: str, fill: bytes, *, later_by_s: float = 0.0) -> None:
    """A new file (as a checkpoint save makes one), same size whatever ``fill`` is."""
    path = run / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_bytes(fill * SIZE)
    os.replace(tmp, path)
    if later_by_s:  # aws s3 sync compares times in seconds: the rewrite must be visibly later
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + int(later_by_s * 1e9)))


@pytest.fixture
def run(tmp_path) -> Path:
    folder = tmp_path / "runs" / "tiny"
    _write_checkpoint(folder, "epoch_latest.pt", b"A")
    _write_checkpoint(folder, "epoch_1.pt", b"A")
    (folder / "out.log").write_text("log\n")
    return folder


def _counting_puts(mirror: FsspecMirror) -> list[str]:
    puts: list[str] = []
    real_put = mirror.fs.put_file

    def put_file(lpath, rpath, **kwargs):
        puts.append(Path(rpath).name)
        return real_put(lpath, rpath, **kwargs)

    mirror.fs.put_file = put_file
    return puts


def _check_mirror(run: Path, remote: str, read_remote) -> None:
    mirror = FsspecMirror(run, remote)
    puts = _counting_puts(mirror)
    assert mirror.sync() and sorted(puts) == ["epoch_1.pt", "epoch_latest.pt", "out.log"]
    _write_checkpoint(run, "epoch_latest.pt", b"B")  # same size, new content
    puts.clear()
    assert mirror.sync() and puts == ["epoch_latest.pt"]
    assert read_remote("checkpoints/epoch_latest.pt") == b"B" * SIZE
    # another process (a resumed run) reads what was uploaded from the remote manifest
    again = FsspecMirror(run, remote)
    puts = _counting_puts(again)
    assert again.sync() and puts == []
    _write_checkpoint(run, "epoch_latest.pt", b"C")
    assert again.sync() and puts == ["epoch_latest.pt"]
    assert read_remote("checkpoints/epoch_latest.pt") == b"C" * SIZE
    assert read_remote("checkpoints/epoch_1.pt") == b"A" * SIZE


def test_fsspec_to_a_local_folder_uploads_a_rewritten_file_of_the_same_size(run, tmp_path):
    remote = tmp_path / "bucket" / "tiny"
    _check_mirror(run, str(remote), lambda rel: (remote / rel).read_bytes())
    assert (remote / MANIFEST).is_file()


def test_fsspec_to_s3_uploads_a_rewritten_file_of_the_same_size(run, monkeypatch):
    with s3_server(monkeypatch):
        _check_mirror(run, f"s3://{BUCKET}/runs/tiny", lambda rel: read_object(f"runs/tiny/{rel}"))


def test_aws_s3_sync_uploads_a_rewritten_file_of_the_same_size(run, monkeypatch):
    with s3_server(monkeypatch):
        remote = f"s3://{BUCKET}/runs/tiny"
        (run / "checkpoints" / ".epoch_2.pt.tmp").write_bytes(b"half-written")
        assert sync_s3(run, remote)
        assert read_object("runs/tiny/checkpoints/epoch_latest.pt") == b"A" * SIZE
        _write_checkpoint(run, "epoch_latest.pt", b"B", later_by_s=5)
        assert sync_s3(run, remote)
        assert read_object("runs/tiny/checkpoints/epoch_latest.pt") == b"B" * SIZE
        import boto3

        keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
        assert "runs/tiny/checkpoints/.epoch_2.pt.tmp" not in keys


def test_a_resumed_run_uploads_its_new_epoch_latest(tmp_path):
    """The trainer's wiring: training 1 epoch, then resuming to 2, leaves epoch 2's epoch_latest.pt remote."""
    data = {"train": write_colour_shards(tmp_path / "shards", num_shards=2, per_shard=32)}
    data["model"] = write_tiny_model(tmp_path)
    remote = tmp_path / "remote"
    sync = dict(remote_sync=str(remote), remote_sync_protocol="fsspec", remote_sync_frequency=3600)
    run_training(tiny_config(data, tmp_path, epochs=1, **sync))
    first = (remote / "tiny" / "checkpoints" / "epoch_latest.pt").read_bytes()
    run_training(tiny_config(data, tmp_path, epochs=2, resume="latest", **sync))
    local = tmp_path / "runs" / "tiny" / "checkpoints"
    uploaded = (remote / "tiny" / "checkpoints" / "epoch_latest.pt").read_bytes()
    assert uploaded != first
    assert uploaded == (local / "epoch_latest.pt").read_bytes() == (local / "epoch_2.pt").read_bytes()


def test_remote_sync_stop_runs_a_last_sync(run, tmp_path):
    syncer = RemoteSync(run, str(tmp_path / "remote"), "fsspec", every_seconds=3600)
    syncer.start()
    syncer.stop()
    assert (tmp_path / "remote" / "tiny" / "out.log").read_text() == "log\n"


@pytest.mark.parametrize(
    ("remote", "protocol", "message"),
    [
        ("/mnt/backup", "s3", "the s3 protocol needs an s3:// URL"),
        ("nope://bucket/runs", "fsspec", "Protocol not known: nope"),
    ],
)
def test_unreachable_remotes_are_refused_before_training(remote, protocol, message, tmp_path, capsys):
    from clipctl.cli.main import main
    from tests.helpers import assert_user_error

    shards = write_colour_shards(tmp_path / "shards", num_shards=2, per_shard=32)
    argv = ["train", "--model", write_tiny_model(tmp_path), "--train-data", shards, "--logs", str(tmp_path)]
    argv += ["--remote-sync", remote, "--remote-sync-protocol", protocol, "--dry-run"]
    assert main(argv) == 2
    assert_user_error(capsys.readouterr().err, message)
