"""Evaluation during a 2-rank ``--fsdp`` run: every rank takes part in each forward of the sharded model, and
rank 0 reports the same validation loss one process computes from the saved checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train.engine_helpers import (
    COLOURS,
    colour_image,
    launch_env,
    torchrun,
    write_colour_shards,
    write_tiny_model,
)

WORKER = str(Path(__file__).with_name("fsdp_eval_worker.py"))


@pytest.mark.slow
def test_zero_shot_and_val_evaluation_run_on_a_sharded_model(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    shards = write_colour_shards(tmp_path / "train", num_shards=2, per_shard=32)
    val = write_colour_shards(tmp_path / "val", num_shards=1, per_shard=24, seed=5)
    rng = np.random.default_rng(0)
    for index, (name, rgb) in enumerate(list(COLOURS.items())[:3]):
        folder = tmp_path / "imagenet" / f"n{index:08d}"
        folder.mkdir(parents=True)
        for i in range(2):
            (folder / f"{name}{i}.png").write_bytes(colour_image(rgb, rng))
    model = write_tiny_model(tmp_path)
    args = ["train", "--model", model, "--train-data", shards, "--val-data", val, "--imagenet-val"]
    args += [str(tmp_path / "imagenet"), "--zeroshot-frequency", "1", "--batch-size", "8", "--epochs", "1"]
    args += [
        "--workers",
        "1",
        "--precision",
        "fp32",
        "--fsdp",
        "--logs",
        str(tmp_path / "runs"),
        "--name",
        "ev",
    ]
    done = subprocess.run(
        [*torchrun(), WORKER, "--", *args], env=launch_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(
        (tmp_path / "runs" / "ev" / "checkpoints" / "results.jsonl").read_text().splitlines()[-1]
    )
    assert 0 <= results["imagenet-zeroshot-val-top1"] <= 1 and results["num_samples"] == 24

    from clipctl.api import create_model_and_transforms, get_tokenizer
    from clipctl.config.run import resolve_run_config
    from clipctl.runtime import plan_precision
    from clipctl.train.data import build_val_data
    from clipctl.train.evaluate import val_metrics

    checkpoint = tmp_path / "runs" / "ev" / "checkpoints" / "epoch_1"
    single, _, preprocess = create_model_and_transforms(model, str(checkpoint), output_dict=True)
    cfg = resolve_run_config(None, {"model": model, "val_data": val, "batch_size": 8, "workers": 0}, [])
    data = build_val_data(cfg, preprocess, get_tokenizer(model))
    cpu = torch.device("cpu")
    expected = val_metrics(single, data, device=cpu, plan=plan_precision("fp32", cpu, training=True))
    assert results["clip_val_loss"] == pytest.approx(expected["clip_val_loss"], rel=1e-5)
