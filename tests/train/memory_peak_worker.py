"""Run alone or under ``torchrun``: the peak host memory of a few training steps next to the memory plan.

Each configuration is ``name:world:batch:checkpointing`` (``checkpointing`` 0/1); a configuration whose world
size is not this launch's is skipped. Steps run on a mid-size ViT CLIP in fp32 with AdamW; the peak is the
resident set's high-water mark above the resident set just before the model is built, after one warm-up step
of the same architecture at batch 2 (so the kernels' code pages are already resident).

Usage: MALLOC_MMAP_THRESHOLD_=65536 python memory_peak_worker.py OUT.json MODEL_JSON CONFIG [CONFIG ...]
"""

from __future__ import annotations

import gc
import json
import sys

import torch

from clipctl.api import create_model
from clipctl.config.run import resolve_run_config
from clipctl.runtime import plan_precision
from clipctl.train.distributed import DistEnv, cleanup, init_distributed
from clipctl.train.fsdp import prepare_for_sharding, shard_model
from clipctl.train.losses import build_loss
from clipctl.train.memory_plan import HostMemoryProbe, measure_footprint, plan_memory
from clipctl.train.optim import build_optimizer
from clipctl.train.step import train_step

STEPS = 3


def _steps(model_json: str, env: DistEnv, batch: int, checkpointing: bool, steps: int) -> None:
    cfg = resolve_run_config(None, {"model": model_json, "precision": "fp32", "gather_with_grad": True}, [])
    model = create_model(model_json, output_dict=True)
    model.set_grad_checkpointing(checkpointing)
    prepare_for_sharding(model)
    plan = plan_precision("fp32", env.device, training=True)
    if env.distributed:
        shard_model(model, device=env.device, world_size=env.world_size, plan=plan)
    optimizer = build_optimizer(cfg, model)
    loss_fn = build_loss(cfg, model)
    size = model.visual.image_size
    for _ in range(steps):
        images = torch.randn(batch, 3, *size)
        texts = torch.randint(1, 49406, (batch, model.context_length))
        train_step(model, [(images, texts)], loss_fn, optimizer, plan=plan, device=env.device)


def main(out_path: str, model_json: str, configs: list[str]) -> None:
    torch.set_num_threads(1)
    env = init_distributed(device="cpu")
    footprint = measure_footprint(model_json, precision="fp32")
    results = {}
    for config in configs:
        name, world, batch, checkpointing = config.split(":")
        if int(world) != env.world_size:
            continue
        _steps(model_json, env, 2, bool(int(checkpointing)), 1)  # warm-up
        gc.collect()
        probe = HostMemoryProbe()
        _steps(model_json, env, int(batch), bool(int(checkpointing)), STEPS)
        peak = probe.peak_bytes()
        plan = plan_memory(
            footprint,
            batch_size=int(batch),
            world_size=env.world_size,
            precision="fp32",
            grad_checkpointing=bool(int(checkpointing)),
        )
        strategy = "FSDP" if env.distributed else "DDP"
        results[name] = {"peak": peak, "plan": plan.total(strategy), "rank": env.rank}
        gc.collect()
    if env.rank == 0:
        with open(out_path, "w", encoding="utf-8") as out:
            json.dump(results, out)
    cleanup(env)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
