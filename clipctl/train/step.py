"""One optimizer step, in the order it happens: forward under autocast, loss, backward, clip, step, clamp.

With ``accum_freq > 1`` the step takes that many micro-batches. As in OpenCLIP, it first embeds all of them
without gradients, then re-runs each micro-batch with gradients and computes the loss over the whole
accumulated batch (fresh features for this micro-batch, cached ones for the others), so the contrastive loss
sees every negative of the accumulated batch, and the summed gradients equal those of one big batch (the
temperature and bias take their gradient from the last pass only; OpenCLIP counted it ``accum_freq`` times).

A micro-batch is ``(images, texts)`` or, when the data has class labels, ``(images, texts, labels)``. A
multi-positive loss (``loss_fn.multi_positive``) also gets the token ids and labels of the whole accumulated
batch, to find the pairs that share a caption or a label.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from clipctl.runtime import PrecisionPlan, autocast

LOGIT_SCALE_MAX = math.log(100)
# per-batch scalars of the model (and teacher) outputs: never concatenated across micro-batches
_SCALARS = ("logit_scale", "logit_bias", "dist_logit_scale", "dist_logit_bias")


def unwrap_model(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def _as_dict(output: object) -> dict[str, torch.Tensor]:
    if isinstance(output, dict):
        return output
    keys = ("image_features", "text_features", "logit_scale", "logit_bias")
    return dict(zip(keys, output, strict=False))  # type: ignore[arg-type]


def teacher_outputs(teacher: nn.Module, images: torch.Tensor, texts: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = _as_dict(teacher(images, texts))
    return {f"dist_{k}": v for k, v in out.items() if v is not None}


@dataclass
class StepResult:
    losses: dict[str, torch.Tensor]  # detached, on device
    finite: torch.Tensor  # bool scalar on device; checked lazily to avoid a sync every step
    grad_norm: torch.Tensor | None = None


def train_step(
    model: nn.Module,
    micro_batches: Sequence[tuple[torch.Tensor, ...]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    plan: PrecisionPlan,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip_norm: float | None = None,
    teacher: nn.Module | None = None,
    before_optimizer_step: Callable[[], None] | None = None,
) -> StepResult:
    """Run one optimizer step over ``micro_batches`` (one batch unless accumulating)."""
    model.train()
    batches = [
        (
            images.to(device=device, dtype=plan.input_dtype, non_blocking=True),
            *(t.to(device=device, non_blocking=True) for t in rest),
        )
        for images, *rest in micro_batches
    ]
    optimizer.zero_grad(set_to_none=True)
    cached = _embed_without_grad(model, batches, plan, device, teacher) if len(batches) > 1 else {}
    pairs = _pair_keys(batches) if getattr(loss_fn, "multi_positive", False) else {}
    for j, (images, texts, *_) in enumerate(batches):
        last = j == len(batches) - 1
        # DDP all-reduces once, after the last micro-batch, instead of after each one
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(plan, device):
                out = _forward(model, images, texts, teacher)
                losses = loss_fn(**_loss_inputs(out, cached, j, last), **pairs, output_dict=True)
                total = sum(losses.values())
            _backward(total, scaler)

    if before_optimizer_step is not None:
        before_optimizer_step()
    grad_norm = _optimizer_step(model, optimizer, scaler, grad_clip_norm)
    # the temperature must stay in [1, 100]: beyond that the logits overflow and training diverges
    with torch.no_grad():
        unwrap_model(model).logit_scale.clamp_(0, LOGIT_SCALE_MAX)

    detached = {k: v.detach() for k, v in losses.items()}
    detached["loss"] = total.detach()
    return StepResult(losses=detached, finite=torch.isfinite(detached["loss"]), grad_norm=grad_norm)


def _forward(
    model: nn.Module, images: torch.Tensor, texts: torch.Tensor, teacher: nn.Module | None
) -> dict[str, torch.Tensor]:
    out = _as_dict(model(images, texts))
    if teacher is not None:
        out.update(teacher_outputs(teacher, images, texts))
    return out


def _pair_keys(batches: list[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    """Token ids (and labels) of the whole accumulated batch, in the order the loss sees its features."""
    keys = {"caption_tokens": torch.cat([batch[1] for batch in batches])}
    if len(batches[0]) > 2:
        keys["class_labels"] = torch.cat([batch[2] for batch in batches])
    return keys


def _embed_without_grad(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, ...]],
    plan: PrecisionPlan,
    device: torch.device,
    teacher: nn.Module | None,
) -> dict[str, list[torch.Tensor]]:
    """Every micro-batch's outputs but the temperature (and bias), for the loss of the other passes."""
    cached: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for images, texts, *_ in batches:
            with autocast(plan, device):
                out = _forward(model, images, texts, teacher)
            for key, value in out.items():
                if key not in _SCALARS and value is not None:
                    cached.setdefault(key, []).append(value)
    return cached


def _loss_inputs(
    out: dict[str, torch.Tensor], cached: dict[str, list[torch.Tensor]], j: int, last: bool
) -> dict[str, torch.Tensor]:
    """The loss of the whole accumulated batch: this pass's fresh outputs in place ``j``, cached ones around.

    Every pass computes that loss, so the temperature (and bias) take their gradient from the last pass only;
    otherwise they would get ``accum_freq`` times the big-batch gradient (OpenCLIP's behaviour).
    """
    if not cached:
        return out
    inputs = {k: (v if last or v is None else v.detach()) for k, v in out.items() if k in _SCALARS}
    for key, values in cached.items():
        inputs[key] = torch.cat(values[:j] + [out[key]] + values[j + 1 :])
    return inputs


def _optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    grad_clip_norm: float | None,
) -> torch.Tensor | None:
    grad_norm = None
    if scaler is not None and grad_clip_norm is not None:
        scaler.unscale_(optimizer)
    if grad_clip_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return grad_norm


def _backward(total: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    if scaler is not None:
        scaler.scale(total).backward()
    else:
        total.backward()
