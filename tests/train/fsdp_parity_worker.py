"""Run under ``torchrun`` (sharded with FSDP2) or alone (one process, unsharded): K optimizer steps of each
variant on fixed global batches; the full parameters after the steps are saved to a file.

Each rank takes its slice of every global (micro-)batch (with class labels for the multi-positive
variants); one process takes the whole batch. The model is
sharded by ``clipctl.train.fsdp.shard_model`` (what ``clipctl train --fsdp`` runs), and the optimizer, loss
and step come from the training engine. With two ranks the worker also records the bytes each rank holds in
parameters, gradients and optimizer state, under DDP and under FSDP.

Usage: python fsdp_parity_worker.py OUT.pt MODEL_JSON [MODEL_JSON ...]
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from clipctl.api import create_model
from clipctl.config.run import resolve_run_config
from clipctl.runtime import plan_precision
from clipctl.train.distributed import DistEnv, cleanup, init_distributed
from clipctl.train.fsdp import full_value, local_bytes, prepare_for_sharding, shard_model
from clipctl.train.losses import build_loss
from clipctl.train.optim import build_optimizer
from clipctl.train.step import train_step, unwrap_model

GLOBAL_BATCH = 8
STEPS = 2
# SGD with momentum for the gradient paths: AdamW turns the float noise in gradients that are mathematically
# zero (the attention key bias: softmax ignores it) into full-size updates, which would blur the comparison;
# AdamW over sharded tensors is the last variant, compared with that in mind.
SGD = {"opt": "timm/momentum", "momentum": 0.9, "lr": 0.05}
VARIANTS = {
    # the full-matrix loss is exact across ranks with gather_with_grad (without it each rank back-propagates
    # only its own rows and DDP/FSDP average: 1/world of the gradient, as in OpenCLIP)
    "gather": {"gather_with_grad": True, **SGD},
    "clipped": {"gather_with_grad": True, "grad_clip_norm": 0.05, **SGD},
    "local_loss": {"local_loss": True, "gather_with_grad": True, **SGD},
    "accum_freq_2": {"gather_with_grad": True, "accum_freq": 2, **SGD},
    "grad_checkpointing": {"gather_with_grad": True, "grad_checkpointing": True, **SGD},
    "lock_text": {"gather_with_grad": True, "lock_text": True, "lock_text_freeze_layer_norm": True, **SGD},
    "adamw": {"gather_with_grad": True, "grad_clip_norm": 0.05},
    # batches carry class labels (3 classes in 8 samples, so pairs share them): labels and token ids are
    # gathered across ranks to find the positives
    "multi_positive": {"gather_with_grad": True, "multi_positive": True, **SGD},
    "multi_positive_local_accum": {
        "local_loss": True,
        "gather_with_grad": True,
        "accum_freq": 2,
        "multi_positive": True,
        **SGD,
    },
}


def _batches(
    model: nn.Module, step: int, micro: int, env: DistEnv, *, labelled: bool = False
) -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(100 + step)
    model = unwrap_model(model)
    size = model.visual.image_size
    per_rank = GLOBAL_BATCH // env.world_size
    rows = slice(env.rank * per_rank, (env.rank + 1) * per_rank)
    out = []
    for _ in range(micro):
        images = torch.randn(GLOBAL_BATCH, 3, size[0], size[1], generator=generator)
        texts = torch.randint(1, 49406, (GLOBAL_BATCH, model.context_length), generator=generator)
        texts[:, -1] = 49407  # the EOT token the text tower pools at
        labels = torch.randint(0, 3, (GLOBAL_BATCH,), generator=generator)
        out.append((images[rows], texts[rows], labels[rows]) if labelled else (images[rows], texts[rows]))
    return out


def _build(model_json: str, settings: dict, env: DistEnv, *, shard: bool):
    cfg = resolve_run_config(
        None, {"model": model_json, "precision": "fp32", "lr": 1e-3, "wd": 0.1, **settings}, []
    )
    torch.manual_seed(0)
    model = create_model(model_json, output_dict=True)
    if cfg.lock_text:
        model.lock_text_tower(freeze_layer_norm=cfg.lock_text_freeze_layer_norm)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    prepare_for_sharding(model)
    plan = plan_precision("fp32", env.device, training=True)
    if shard:
        shard_model(model, device=env.device, world_size=env.world_size, plan=plan)
    elif env.distributed:
        model = nn.parallel.DistributedDataParallel(model)
    return cfg, model, plan


def run_variant(model_json: str, settings: dict, env: DistEnv) -> dict:
    cfg, model, plan = _build(model_json, settings, env, shard=env.distributed)
    optimizer = build_optimizer(cfg, model)
    loss_fn = build_loss(cfg, model)
    start = {name: full_value(p.detach()).clone() for name, p in model.named_parameters()}
    norms = []
    for step in range(STEPS):
        result = train_step(
            model,
            _batches(model, step, cfg.accum_freq, env, labelled=cfg.multi_positive),
            loss_fn,
            optimizer,
            plan=plan,
            device=env.device,
            grad_clip_norm=cfg.grad_clip_norm,
        )
        if result.grad_norm is not None:
            norms.append(float(full_value(result.grad_norm)))
    params = {name: full_value(p.detach()).clone() for name, p in model.named_parameters()}
    frozen = sorted(name for name, p in model.named_parameters() if not p.requires_grad)
    moved = {name: float((params[name] - start[name]).abs().max()) for name in params}
    return {"params": params, "grad_norms": norms, "frozen": frozen, "moved": moved}


def held_bytes(model_json: str, env: DistEnv, *, shard: bool) -> dict[str, int]:
    """Bytes this rank holds in parameters, gradients and optimizer state after one step (live tensors)."""
    cfg, model, plan = _build(model_json, {"gather_with_grad": True}, env, shard=shard)
    optimizer = build_optimizer(cfg, model)
    train_step(
        model, _batches(model, 0, 1, env), build_loss(cfg, model), optimizer, plan=plan, device=env.device
    )
    params = list(model.parameters())
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    return {
        "params": sum(local_bytes(p) for p in params),
        "grads": sum(local_bytes(p.grad) for p in params),
        "optimizer": sum(local_bytes(t) for t in state),
    }


def main(out_path: str, model_jsons: list[str]) -> None:
    torch.set_num_threads(1)
    env = init_distributed(device="cpu")
    results: dict = {"world_size": env.world_size, "runs": {}}
    for model_json in model_jsons:
        for name, settings in VARIANTS.items():
            results["runs"][f"{model_json}:{name}"] = run_variant(model_json, settings, env)
    if env.distributed:
        results["bytes"] = {
            kind: held_bytes(model_jsons[0], env, shard=kind == "fsdp") for kind in ("ddp", "fsdp")
        }
    if env.rank == 0:
        torch.save(results, out_path)
    cleanup(env)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
