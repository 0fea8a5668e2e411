"""What both evaluation jobs need before the first batch, besides :mod:`clipctl.runtime`: the model with its
evaluation transform and tokenizer, and a DataLoader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from clipctl.errors import ClipctlError
from clipctl.runtime import INFERENCE_PRECISIONS, PrecisionPlan, parse_device, plan_precision


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ClipctlError(f"--batch-size must be at least 1, got {batch_size}")


def plan_eval(device: str | torch.device, precision: str) -> tuple[torch.device, PrecisionPlan]:
    """The device and precision plan of an evaluation (float16 refused on a CPU)."""
    torch_device = parse_device(device)
    return torch_device, plan_precision(precision, torch_device, choices=INFERENCE_PRECISIONS)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device
    precision: PrecisionPlan


def load_model(
    model: str,
    pretrained: str | None,
    device: torch.device,
    precision: PrecisionPlan,
    *,
    weights_only: bool = True,
) -> LoadedModel:
    """Resolve, build and load strictly (an unknown name or a mismatched checkpoint is a one-line error)."""
    from clipctl.api import create_model_and_transforms, get_tokenizer

    net, _, preprocess = create_model_and_transforms(
        model, pretrained, precision=precision.model_precision, device=device, weights_only=weights_only
    )
    net.eval()
    return LoadedModel(net, preprocess, get_tokenizer(model), device, precision)


def make_loader(
    dataset: Any, *, batch_size: int, workers: int, collate: Callable[[list[Any]], Any], device: torch.device
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
