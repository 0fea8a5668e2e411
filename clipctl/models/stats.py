"""Size and cost of a model: parameter counts per tower and FLOPs per sample, measured on the meta device
so that even the largest architectures are counted without allocating their weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class ModelStats:
    params_total: int
    params_visual: int
    params_text: int
    image_gflops: float | None
    text_gflops: float | None
    image_size: tuple[int, int]
    context_length: int | None


def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _text_params(model: nn.Module) -> int:
    text = getattr(model, "text", None)
    if text is not None:
        return _count(text)
    # CLIP keeps its text tower at the top level: everything that is not the image tower or a logit parameter.
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if not name.startswith(("visual.", "logit_", "text_decoder."))
    )


def _gflops(fn) -> float | None:
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            fn()
    except (RuntimeError, NotImplementedError, TypeError):
        return None  # an op without a meta kernel: report unknown rather than a wrong number
    return counter.get_total_flops() / 1e9


def model_stats(model: nn.Module) -> ModelStats:
    """Parameter counts and per-sample GFLOPs (2 x multiply-adds) at the model's own image size."""
    size = getattr(model.visual, "image_size", (224, 224))
    size = (size, size) if isinstance(size, int) else tuple(size)
    context_length = getattr(model, "context_length", None)
    device = next(model.parameters()).device
    image = torch.zeros(1, 3, *size, device=device)
    image_gflops = _gflops(lambda: model.encode_image(image))
    text_gflops = None
    if context_length:
        tokens = torch.zeros(1, context_length, dtype=torch.long, device=device)
        text_gflops = _gflops(lambda: model.encode_text(tokens))
    return ModelStats(
        params_total=_count(model),
        params_visual=_count(getattr(model, "visual", None)),
        params_text=_text_params(model),
        image_gflops=image_gflops,
        text_gflops=text_gflops,
        image_size=size,
        context_length=context_length,
    )


def training_gflops_per_sample(model: nn.Module) -> float | None:
    """About what one training sample costs ``model`` in GFLOPs (forward + backward = 3x the forward), counted
    on meta copies of its weights: nothing is computed and batch-norm statistics stay untouched. None when an
    op cannot be counted."""
    size = getattr(getattr(model, "visual", None), "image_size", (224, 224))
    size = (size, size) if isinstance(size, int) else tuple(size)
    context_length = getattr(model, "context_length", None) or 77
    state = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
    }
    image = torch.zeros(1, 3, *size, device="meta")
    tokens = torch.zeros(1, context_length, dtype=torch.long, device="meta")
    gflops = _gflops(lambda: torch.func.functional_call(model, state, (image, tokens)))
    return None if gflops is None else 3 * gflops
