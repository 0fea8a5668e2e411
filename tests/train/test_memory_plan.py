"""The memory plan: measured on the meta device, and within 25% of the peak host memory of real training
steps (a mid-size ViT CLIP in fp32 on CPU: one process, one process with grad checkpointing, and rank 0 of
two FSDP ranks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipctl.train.memory_plan import GIB, measure_footprint, plan_memory
from tests.helpers import TINY_VIT_CFG, write_model_config
from tests.train.engine_helpers import launch_env, torchrun, write_tiny_model

WORKER = str(Path(__file__).with_name("memory_peak_worker.py"))
MID_CFG = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 512, "head_width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 4},
}


def test_plan_counts_the_meta_models_parameters_and_shards_them(tmp_path):
    model = str(write_model_config(tmp_path, cfg=TINY_VIT_CFG))
    footprint = measure_footprint(model, precision="fp32")
    from clipctl.api import create_model

    real = create_model(model)
    assert footprint.params == sum(p.numel() for p in real.parameters())
    plan = plan_memory(footprint, batch_size=8, world_size=4, precision="fp32")
    ddp, fsdp = plan.ranks["DDP"], plan.ranks["FSDP"]
    assert ddp.params == footprint.params * 4 and ddp.optimizer == 2 * ddp.params
    assert ddp.grads == 2 * ddp.params  # param.grad and DDP's bucket
    # a quarter of every tensor (rounded up per tensor, as FSDP pads), plus the units gathered at a time
    assert footprint.params <= fsdp.params < footprint.params * 1.1 and fsdp.gathered > 0
    assert fsdp.activations == ddp.activations > 0 and fsdp.activations_checkpointed < fsdp.activations
    # the logits of the global batch, or of the local rows with --local-loss
    assert ddp.logits == pytest.approx(4 * ddp.logits_local, rel=1e-3) and ddp.logits_local > 0
    assert plan.total("FSDP") < plan.total("DDP")


def test_plan_says_whether_it_fits_the_device_memory(tmp_path):
    footprint = measure_footprint(str(write_model_config(tmp_path, cfg=TINY_VIT_CFG)), precision="amp_bf16")
    roomy = plan_memory(footprint, batch_size=8, world_size=2, device_memory_gib=80)
    tight = plan_memory(
        footprint, batch_size=8, world_size=2, device_memory_gib=roomy.total("FSDP") / GIB * 0.5
    )
    unknown = plan_memory(footprint, batch_size=8, world_size=2)
    assert roomy.fits("DDP") and roomy.fits("FSDP")
    assert tight.fits("FSDP") is False and unknown.fits("FSDP") is None


@pytest.mark.slow
def test_plan_is_within_a_quarter_of_the_measured_peak(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    model = write_tiny_model(tmp_path, "mid", MID_CFG)
    # freed tensors go back to the system: RSS follows live tensors
    env = launch_env(MALLOC_MMAP_THRESHOLD_="65536")
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    jobs = [
        [sys.executable, WORKER, str(one), model, "plain:1:32:0", "checkpointing:1:32:1"],
        [*torchrun(), WORKER, str(two), model, "fsdp:2:32:0"],
    ]
    running = [subprocess.Popen(job, env=env, stderr=subprocess.PIPE, text=True) for job in jobs]
    for job in running:
        _, errors = job.communicate(timeout=600)
        assert job.returncode == 0, errors[-3000:]
    results = {**json.loads(one.read_text()), **json.loads(two.read_text())}
    assert set(results) == {"plain", "checkpointing", "fsdp"}
    for name, result in results.items():
        assert result["peak"] > 200 * 2**20, (name, result)  # tensors, not the interpreter, dominate
        ratio = result["plan"] / result["peak"]
        assert 0.75 <= ratio <= 1.25, (name, result, ratio)
