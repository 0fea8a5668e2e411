"""``--fsdp``: two ranks sharded with FSDP2 train exactly as one process on the whole batch, and hold about
half the bytes DDP holds.

One worker launch per world size runs every variant (loss exchange, accumulation, checkpointing, frozen
tower, clipping, AdamW, multi-positive with class labels) for a ViT CLIP and a ConvNeXt-tower CLIP, so the
test pays for two process starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.engine_helpers import TINY_CONVNEXT_CFG, launch_env, torchrun, write_tiny_model

WORKER = str(Path(__file__).with_name("fsdp_parity_worker.py"))


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory) -> tuple[dict, dict]:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    folder = tmp_path_factory.mktemp("fsdp")
    models = [write_tiny_model(folder, "vit"), write_tiny_model(folder, "convnext", TINY_CONVNEXT_CFG)]
    env = launch_env()
    one, two = folder / "one.pt", folder / "two.pt"
    jobs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(one), *models], env=env, stderr=subprocess.PIPE, text=True
        ),
        subprocess.Popen(
            [*torchrun(), WORKER, str(two), *models],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    for job in jobs:
        _, errors = job.communicate(timeout=400)
        assert job.returncode == 0, errors[-3000:]
    return torch.load(one, weights_only=True), torch.load(two, weights_only=True)


@pytest.mark.slow
def test_two_rank_fsdp_parameters_equal_one_process_on_the_full_batch(parity_runs):
    one, two = parity_runs
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["runs"].keys() == two["runs"].keys() and len(one["runs"]) == 18
    for key, single in one["runs"].items():
        sharded = two["runs"][key]
        assert single["params"].keys() == sharded["params"].keys()
        assert single["frozen"] == sharded["frozen"]
        # AdamW divides by the root of tiny second moments: the float noise of gradients that are zero in
        # exact arithmetic (attention key biases) becomes visible there, so it gets a looser bound
        rtol, atol = (1e-3, 3e-5) if key.endswith(":adamw") else (1e-5, 1e-6)
        for name, value in single["params"].items():
            torch.testing.assert_close(
                sharded["params"][name], value, rtol=rtol, atol=atol, msg=f"{key} {name}"
            )
        trained = [n for n in single["params"] if n not in single["frozen"]]
        # training moved the trainable tensors (a norm gain of 1.0 may not move in float32 within two
        # small steps), and nothing frozen
        assert sum(single["moved"][n] > 0 for n in trained) >= 0.8 * len(trained), key
        assert all(single["moved"][n] == 0 and sharded["moved"][n] == 0 for n in single["frozen"]), key
        if key.endswith(":lock_text"):
            assert any(n.startswith("transformer.") for n in single["frozen"])
        if key.endswith((":clipped", ":adamw")):
            # the global norm over all shards, above the clip threshold, so clipping acted
            torch.testing.assert_close(
                torch.tensor(sharded["grad_norms"]), torch.tensor(single["grad_norms"])
            )
            assert min(single["grad_norms"]) > 0.05
        if key.endswith(":multi_positive"):
            # the shared labels changed the loss: not the standard loss's parameters
            standard = one["runs"][key.replace(":multi_positive", ":gather")]["params"]
            assert any(not torch.allclose(standard[n], v) for n, v in single["params"].items()), key


@pytest.mark.slow
def test_two_rank_fsdp_holds_about_half_the_bytes_of_ddp(parity_runs):
    held = parity_runs[1]["bytes"]
    ddp, fsdp = sum(held["ddp"].values()), sum(held["fsdp"].values())
    assert held["ddp"]["optimizer"] > held["ddp"]["params"] > 0 and held["fsdp"]["grads"] > 0
    assert fsdp <= 0.55 * ddp, (fsdp, ddp)
