"""A run SIGKILLed in the middle of an epoch and continued with ``clipctl resume RUN_DIR`` (no other flags) ends
with the same weights as an uninterrupted run on the same deterministic data."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipctl.train.checkpointing import read_info
from tests.train.engine_helpers import CLIPCTL, subprocess_env, write_colour_shards, write_tiny_model

KILLER = str(Path(__file__).with_name("kill_worker.py"))


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    shards = write_colour_shards(tmp_path / "shards", num_shards=4, per_shard=32)
    model = write_tiny_model(tmp_path)
    logs = tmp_path / "runs"
    # 128 samples / batch 16 = 8 steps per epoch, 2 epochs; 2 workers, so the data position spans processes
    args = ["train", "--model", model, "--train-data", shards, "--batch-size", "16", "--epochs", "2"]
    args += ["--workers", "2", "--lr", "1e-3", "--warmup", "3", "--precision", "fp32", "--seed", "3"]
    args += ["--save-every-n-steps", "3", "--log-every-n-steps", "1", "--logs", str(logs)]
    env = subprocess_env()

    straight = subprocess.run(
        [*CLIPCTL, *args, "--name", "straight"], env=env, capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    # killed before step 14 runs: the newest checkpoint is step_12.pt, batch 4 of 8 in the second epoch
    killed = subprocess.run(
        [sys.executable, KILLER, "14", "--", *args, "--name", "killed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = logs / "killed"
    info = read_info(run / "checkpoints" / "epoch_latest.pt")
    assert (info.epoch, info.step, info.batch_in_epoch) == (1, 12, 4)
    assert not (run / "checkpoints" / "epoch_2.pt").exists()

    resumed = subprocess.run(
        [*CLIPCTL, "resume", str(run)], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and "batch 4" in resumed.stderr

    a = _state(logs / "straight" / "checkpoints" / "epoch_2.pt")
    b = _state(run / "checkpoints" / "epoch_2.pt")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    # same operations in the same order on one thread: bit-identical is expected; allow float noise anyway
    assert worst <= 1e-6, worst
    # and the run did move: resuming from the wrong position would not be caught by comparing to the start
    first = torch.load(run / "checkpoints" / "epoch_1.pt", map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    assert max((first[k] - b[k]).abs().max().item() for k in b) > 1e-4
