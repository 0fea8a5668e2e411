"""Run under ``torchrun`` (or alone): one clipctl training step on a fixed global batch, gradients saved to a file.

Each rank takes its slice of the same global batch; with one process the slice is the whole batch. With
``multi`` the loss is multi-positive and the batch repeats captions and labels across ranks; ``accum`` splits
each rank's slice into that many micro-batches. The model,
loss, DDP wrapping and step come from the training engine (``init_distributed``, ``create_loss``, ``train_step``)
so the comparison exercises the code path ``clipctl train`` runs under torchrun.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from clipctl.api import create_model
from clipctl.config.run import resolve_run_config
from clipctl.runtime import plan_precision
from clipctl.train.distributed import cleanup, init_distributed
from clipctl.train.losses import build_loss
from clipctl.train.step import train_step


def main(model_json: str, out_path: str, global_batch: int, multi: bool = False, accum: int = 1) -> None:
    torch.set_num_threads(1)
    env = init_distributed(device="cpu")
    flags = {"model": model_json, "local_loss": True, "gather_with_grad": True, "precision": "fp32"}
    cfg = resolve_run_config(None, {**flags, "multi_positive": multi}, [])
    torch.manual_seed(0)
    model = create_model(model_json, output_dict=True)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(global_batch, 3, 32, 32, generator=generator)
    texts = torch.randint(1, 49406, (global_batch, 16), generator=generator)
    texts[:, -1] = 49407  # the EOT token the text tower pools at
    labels = torch.arange(global_batch) % 3 - 1  # labels 0 and 1, and unlabelled (-1) pairs
    if multi:
        texts[global_batch // 2 :] = texts[: global_batch // 2]  # every caption twice, on different ranks
        texts[1] = texts[2]  # and twice on one rank
    per_rank = global_batch // env.world_size
    rows = slice(env.rank * per_rank, (env.rank + 1) * per_rank)
    step = per_rank // accum
    micro = [
        (images[rows][i : i + step], texts[rows][i : i + step], labels[rows][i : i + step])
        for i in range(0, per_rank, step)
    ]
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(model)
    loss_fn = build_loss(cfg, model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    grads: dict[str, torch.Tensor] = {}

    def capture() -> None:
        for name, param in model.named_parameters():
            if param.grad is not None:
                grads[name.removeprefix("module.")] = param.grad.detach().clone()

    result = train_step(
        model,
        micro if multi else [(images[rows], texts[rows])],
        loss_fn,
        optimizer,
        plan=plan_precision("fp32", env.device),
        device=env.device,
        before_optimizer_step=capture,
    )
    if env.rank == 0:
        torch.save({"grads": grads, "loss": result.losses["loss"]}, out_path)
    cleanup(env)


if __name__ == "__main__":
    # worker.py MODEL_JSON OUT GLOBAL_BATCH [multi ACCUM]
    args = sys.argv[1:]
    main(
        args[0],
        args[1],
        int(args[2]),
        multi=args[3:4] == ["multi"],
        accum=int(args[4]) if len(args) > 4 else 1,
    )
