"""``torchrun --nproc_per_node 2`` on CPU (gloo) with --local-loss --gather-with-grad: the gradients DDP leaves
on every rank equal those of one process on the whole batch."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.engine_helpers import subprocess_env, write_tiny_model

WORKER = str(Path(__file__).with_name("dist_grad_worker.py"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [[], ["multi", "2"]],
    ids=["clip", "multi_positive_accumulated"],
)
def test_two_process_local_loss_gradients_equal_one_process_full_batch(tmp_path, extra):
    """With ``multi``: a multi-positive loss on captions repeated across ranks, labels, 2 micro-batches per rank
    against one process with one batch."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    model = write_tiny_model(tmp_path)
    env = subprocess_env()
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    single = tmp_path / "single.pt"
    one_batch = [extra[0], "1"] if extra else []
    subprocess.run(
        [sys.executable, WORKER, model, str(single), "16", *one_batch], env=env, check=True, timeout=120
    )
    double = tmp_path / "ddp.pt"
    cmd = [
        *_torchrun(),
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
    ]
    done = subprocess.run(
        [*cmd, WORKER, model, str(double), "16", *extra], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = torch.load(single, weights_only=True)
    two = torch.load(double, weights_only=True)
    assert one["grads"].keys() == two["grads"].keys() and len(one["grads"]) > 10
    for name, grad in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # the loss on rank 0 is its local share; the gradients are what DDP averaged, so they are the test
    assert torch.isfinite(two["loss"])
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_rank_and_world_come_from_torchrun_or_slurm_variables(monkeypatch):
    from clipctl.train.distributed import world_from_env

    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(key, raising=False)
    assert world_from_env() == (0, 0, 1)
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert world_from_env() == (5, 1, 8)
    # `srun torchrun ...` (one task per node): torchrun's variables win
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("RANK", "9")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world_from_env() == (9, 1, 16)


def test_srun_without_a_rendezvous_address_is_one_clear_error(monkeypatch):
    from clipctl.errors import ClipctlError
    from clipctl.train.distributed import init_distributed

    # init_distributed fills RANK/WORLD_SIZE for env://; give it a private environment so nothing leaks
    drop = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    private = {k: v for k, v in os.environ.items() if k not in drop}
    private.update(SLURM_NTASKS="2", SLURM_PROCID="0")
    monkeypatch.setattr(os, "environ", private)
    with pytest.raises(ClipctlError, match="MASTER_ADDR"):
        init_distributed(device="cpu")
