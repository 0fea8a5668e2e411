"""Training data from remote shards, as the seed cards give it: `pipe:aws s3 cp s3://bucket/path/{...}.tar -`
against an S3-compatible server on 127.0.0.1 (moto) and `http://127.0.0.1:PORT/{...}.tar` from a local HTTP
server. The loaders read every served sample; a shard that 404s is skipped and counted, not fatal; `clipctl
train` runs its planned steps and `clipctl data inspect` reports on the same specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torchvision import transforms as T

from clipctl.cli.main import main
from clipctl.train import data_wds
from clipctl.train.data import build_train_data, build_val_data
from tests.data.image_server import serve_directory
from tests.remote_servers import BUCKET, s3_server, upload
from tests.train.engine_helpers import write_tiny_model
from tests.train.test_data_wds import captions, cfg, fake_tokenizer, write_shards

PER_SHARD = 6
SERVED = (0, 1, 3)  # 00002.tar is missing: a 404 (HTTP) or NoSuchKey (S3) in the middle of the list


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("remote-shards")
    write_shards(folder, [PER_SHARD] * 4)
    (folder / "00002.tar").unlink()
    (folder / "sizes.json").unlink()  # nothing to read remotely: the sample count comes from the flag
    return folder


@pytest.fixture
def http_spec(shard_dir):
    with serve_directory(shard_dir) as base:
        yield f"{base}/{{00000..00003}}.tar"


@pytest.fixture
def s3_spec(shard_dir, monkeypatch):
    with s3_server(monkeypatch):
        upload(shard_dir, "path", [f"{s:05d}.tar" for s in SERVED])
        yield f"pipe:aws s3 cp s3://{BUCKET}/path/{{00000..00003}}.tar -"


@pytest.fixture(params=["http", "s3"])
def spec(request, small_buffer):
    return request.getfixturevalue(f"{request.param}_spec")


@pytest.fixture
def small_buffer(monkeypatch):
    """The training shuffle fills 1,000 samples before the first batch: ~56 passes over these 18 samples, each
    pass one `aws` process per shard. A small buffer keeps the test to a couple of passes."""
    monkeypatch.setattr(data_wds, "SHUFFLE_BUFFER", 8)
    monkeypatch.setattr(data_wds, "SHUFFLE_INITIAL", 4)


SERVED_CAPTIONS = sorted(f"s {s}-{i}" for s in SERVED for i in range(PER_SHARD))


def test_eval_loader_reads_every_served_sample_and_counts_the_missing_shard(spec):
    info = build_val_data(cfg(val_data=spec, val_num_samples=18, batch_size=4), T.ToTensor(), fake_tokenizer)
    assert sorted(c for _, tokens in info.dataloader for c in captions(tokens)) == SERVED_CAPTIONS
    assert info.skipped() == 1


def test_train_loader_fills_its_epoch_from_the_served_shards(spec):
    info = build_train_data(
        cfg(train_data=spec, train_num_samples=24, batch_size=4), T.ToTensor(), fake_tokenizer
    )
    assert (info.num_batches, info.num_samples) == (6, 24)
    seen = [c for _, tokens in info.dataloader for c in captions(tokens)]
    assert len(seen) == 24 and set(seen) <= set(SERVED_CAPTIONS)
    assert info.skipped() >= 1  # the missing shard, once per pass over the list


def test_clipctl_train_runs_on_remote_shards_and_reports_the_skipped_shard(spec, tmp_path, capsys):
    model = write_tiny_model(tmp_path)
    argv = ["train", "--model", model, "--train-data", spec, "--train-num-samples", "32", "--batch-size", "8"]
    argv += [
        "--epochs",
        "1",
        "--workers",
        "1",
        "--precision",
        "fp32",
        "--warmup",
        "1",
        "--zeroshot-frequency",
        "0",
    ]
    assert (
        main([*argv, "--logs", str(tmp_path / "runs"), "--name", "remote", "--log-every-n-steps", "1"]) == 0
    )
    run = tmp_path / "runs" / "remote"
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["kind"] == "train"][-1] == 4
    assert "skipped" in (run / "out.log").read_text()


def test_data_inspect_reads_remote_specs(spec, capsys):
    assert main(["data", "inspect", spec, "--json"]) == 1  # the missing shard is a problem
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == len(SERVED) * PER_SHARD
    assert [s["samples"] for s in report["shards"]] == [PER_SHARD, PER_SHARD, 0, PER_SHARD]
    assert len(report["problems"]) == 1 and "00002" in report["problems"][0]
    served_only = spec.replace("{00000..00003}", "{00000..00001}")
    assert main(["data", "inspect", served_only, "--check-images", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] == 2 * PER_SHARD
