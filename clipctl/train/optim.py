"""Optimizer and learning-rate schedules.

AdamW in two groups: gains, biases, 0-/1-d tensors and ``logit_scale`` get no weight decay, everything else
``--wd``. ``--opt timm/<name>`` hands the same groups to timm's ``create_optimizer_v2``.

Schedules are plain functions of the optimizer step (``lr_at``): linear warmup ``base * (step + 1) / warmup``,
then cosine to zero at the last step, constant, or constant with a polynomial cooldown over the last
``--epochs-cooldown`` epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from clipctl.config.run import TrainConfig
from clipctl.errors import ClipctlError

_NO_DECAY_NAME_PARTS = ("bn", "ln", "bias", "logit_scale")


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim < 2 or any(part in name for part in _NO_DECAY_NAME_PARTS)


def param_groups(named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in named_params:
        if not param.requires_grad:
            continue
        (no_decay if is_no_decay(name, param) else decay).append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model.named_parameters(), cfg.wd)
    if not any(group["params"] for group in groups):
        raise ClipctlError("nothing to train: every parameter is frozen (check --lock-image / --lock-text)")
    if cfg.opt.startswith("timm/"):
        from timm.optim import create_optimizer_v2

        kwargs = {k: v for k, v in (("momentum", cfg.momentum), ("eps", cfg.eps)) if v is not None}
        if cfg.beta1 is not None and cfg.beta2 is not None:
            kwargs["betas"] = (cfg.beta1, cfg.beta2)
        try:
            return create_optimizer_v2(
                groups, opt=cfg.opt[len("timm/") :], lr=cfg.lr, weight_decay=cfg.wd, **kwargs
            )
        except (KeyError, AssertionError, ValueError) as err:
            raise ClipctlError(f"timm cannot build optimizer {cfg.opt!r}: {err}") from err
    if cfg.opt.lower() != "adamw":
        raise ClipctlError(f"unknown optimizer {cfg.opt!r}: use adamw or timm/<name>")
    params = [p for g in groups for p in g["params"]]
    # The fused kernel exists for CUDA and (torch >= 2.4) CPU tensors; on a CPU it makes the optimizer step
    # ~5x faster than the default foreach path (tiny-RN-demo: 66 -> 12 ms per step).
    fused = all(p.device.type in ("cuda", "cpu") for p in params) and len({p.device for p in params}) == 1
    kwargs = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    if fused:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass  # an older torch without the CPU kernel, or a dtype it does not take
    return torch.optim.AdamW(groups, **kwargs)


@dataclass
class Schedule:
    """Learning rate as a function of the optimizer step."""

    kind: str
    base_lr: float
    warmup: int
    total_steps: int
    cooldown_steps: int = 0
    cooldown_power: float = 1.0
    cooldown_end: float = 0.0

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        if self.kind == "const":
            return self.base_lr
        if self.kind == "cosine":
            span = self.total_steps - self.warmup
            progress = (step - self.warmup) / span if span > 0 else 1.0
            return 0.5 * (1.0 + math.cos(math.pi * progress)) * self.base_lr
        if self.kind == "const-cooldown":
            start = self.total_steps - self.cooldown_steps
            if step < start:
                return self.base_lr
            span = max(1, self.total_steps - start)
            remaining = max(0.0, 1.0 - (step - start) / span)
            return remaining**self.cooldown_power * (self.base_lr - self.cooldown_end) + self.cooldown_end
        raise ClipctlError(f"unknown --lr-scheduler {self.kind!r}")

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


def build_schedule(cfg: TrainConfig, steps_per_epoch: int) -> Schedule | None:
    """None with --skip-scheduler (the optimizer keeps --lr)."""
    if cfg.skip_scheduler:
        return None
    cooldown = steps_per_epoch * cfg.epochs_cooldown if cfg.lr_scheduler == "const-cooldown" else 0
    return Schedule(
        kind=cfg.lr_scheduler,
        base_lr=float(cfg.lr),
        warmup=cfg.warmup,
        total_steps=steps_per_epoch * cfg.epochs,
        cooldown_steps=cooldown or 0,
        cooldown_power=cfg.lr_cooldown_power,
        cooldown_end=cfg.lr_cooldown_end,
    )
