"""What both evaluation jobs need before the first batch: the device, what a ``--precision`` means there, the
model with its evaluation transform and tokenizer, a DataLoader and a progress bar."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from clipctl.errors import ClipctlError

PRECISIONS = ("fp32", "bf16", "fp16", "amp", "amp_bf16")
MAX_DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class EvalPrecision:
    name: str
    model_precision: str  # what create_model casts the weights to
    autocast_dtype: torch.dtype | None


def plan_precision(precision: str, device: torch.device) -> EvalPrecision:
    if precision not in PRECISIONS:
        raise ClipctlError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision in ("fp16", "amp") and device.type == "cpu":
        alternative = "bf16" if precision == "fp16" else "amp_bf16"
        raise ClipctlError(
            f"--precision {precision} (float16) is slow and poorly supported on a CPU; use --precision {alternative}"
        )
    if precision == "amp":
        return EvalPrecision(precision, "fp32", torch.float16)
    if precision == "amp_bf16":
        return EvalPrecision(precision, "fp32", torch.bfloat16)
    return EvalPrecision(precision, precision, None)


def parse_device(device: str | torch.device) -> torch.device:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ClipctlError(f"unknown --device {device!r}; e.g. cpu, cuda, cuda:1, mps") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ClipctlError(f"--device {device} requested but CUDA is not available here; use --device cpu")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ClipctlError(f"--device {device} requested but MPS is not available here; use --device cpu")
    return parsed


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ClipctlError(f"--batch-size must be at least 1, got {batch_size}")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device
    precision: EvalPrecision


def load_model(
    model: str,
    pretrained: str | None,
    device: torch.device,
    precision: EvalPrecision,
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


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None, num_items: int | None, batch_size: int) -> int:
    """``None``: up to 4 (and no more than cores); never more workers than batches (or shards) to share out."""
    if workers is not None and workers < 0:
        raise ClipctlError(f"--workers must be 0 or more, got {workers}")
    chosen = min(MAX_DEFAULT_WORKERS, available_cores()) if workers is None else workers
    if num_items is not None:
        chosen = min(chosen, max(0, math.ceil(num_items / batch_size) - 1))
    return chosen


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


@contextmanager
def progress_bar(enabled: bool, total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    """A callback that advances a rich progress bar on stderr (a no-op when disabled or stderr is not a tty)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
