"""Which training features a linear probe sees: ``K`` per class for few-shot runs, and the held-out split the
weight decay is chosen on. Both are seeded and depend only on the labels, in dataset order, so a seed gives
the same images on every run and every machine."""

from __future__ import annotations

import torch

from clipctl.errors import ClipctlError


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _per_class(labels: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    return [(int(c), torch.nonzero(labels == c).flatten()) for c in torch.unique(labels)]


def sample_few_shot(
    labels: torch.Tensor, k: int, seed: int, classes: list[str] | None = None
) -> torch.Tensor:
    """Indices of ``k`` images of every class that has training images (sorted); too few is an error."""
    generator = _generator(seed)
    chosen = []
    for label, indices in _per_class(labels):
        if len(indices) < k:
            name = classes[label] if classes is not None and label < len(classes) else str(label)
            raise ClipctlError(f"--few-shot {k}: class {name!r} has only {len(indices)} training image(s)")
        chosen.append(indices[torch.randperm(len(indices), generator=generator)[:k]])
    return torch.cat(chosen).sort().values


def split_held_out(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fit, held_out)`` positions into ``labels``: about ``fraction`` of each class held out, stratified,
    always leaving at least one image of a class to fit on (a class with one image is not held out)."""
    generator = _generator(seed)
    fit, held = [], []
    for _, indices in _per_class(labels):
        order = indices[torch.randperm(len(indices), generator=generator)]
        count = min(len(order) - 1, max(1, round(fraction * len(order)))) if len(order) > 1 else 0
        held.append(order[:count])
        fit.append(order[count:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values
