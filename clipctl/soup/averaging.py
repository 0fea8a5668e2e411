"""Weight-space averages of state dicts of one architecture: uniform and weighted soups, WiSE-FT mixes.

Only floating-point tensors are averaged. Integer and boolean buffers (BatchNorm's ``num_batches_tracked``,
position-id tables) are counters or indices, not weights: they are copied from the ingredient with the largest
weight -- the first checkpoint of a uniform soup, the fine-tuned one of a WiSE-FT mix with alpha > 0.5.

Sums are kept in float32 (float64 for float64 tensors) whatever the ingredients' dtype, and cast back to the
first ingredient's dtype at the end, so fp16/bf16 checkpoints are not rounded once per ingredient.
Ingredients with weight 0 are skipped, and a lone ingredient with weight 1 is copied, not multiplied, so
``alpha=0`` / ``alpha=1`` and the soup of one checkpoint reproduce the inputs bit for bit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence

import torch

from clipctl.errors import ClipctlError

WEIGHT_SUM_TOLERANCE = 1e-6


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class WeightedSum:
    """A running ``sum(w_i * state_dict_i)`` over the floating tensors, one state dict at a time (memory: one
    accumulator plus the state dict being added, whatever the number of ingredients)."""

    def __init__(self) -> None:
        self.layout: dict[str, torch.dtype] | None = None  # the first state dict's key order and dtypes
        self.buffers: dict[str, torch.Tensor] = {}  # non-floating tensors of the heaviest ingredient so far
        self.buffers_weight = -1.0
        self.sums: dict[str, torch.Tensor] = {}
        self.lone: dict[str, torch.Tensor] | None = (
            None  # the only weighted state dict so far, for exact copies
        )
        self.total_weight = 0.0
        self.count = 0

    def add(self, state_dict: Mapping[str, torch.Tensor], weight: float = 1.0) -> None:
        if self.layout is None:
            self.layout = {key: tensor.dtype for key, tensor in state_dict.items()}
        if weight > self.buffers_weight:
            self.buffers = {k: v for k, v in state_dict.items() if not v.is_floating_point()}
            self.buffers_weight = weight
        if weight == 0:
            return
        self.lone = dict(state_dict) if self.count == 0 else None
        for key, tensor in state_dict.items():
            if tensor.is_floating_point():
                scaled = tensor.to(_accumulator_dtype(tensor.dtype)) * weight
                # a new tensor, not +=: copies made by copy() share the tensors summed so far
                self.sums[key] = self.sums[key] + scaled if key in self.sums else scaled
        self.total_weight += weight
        self.count += 1

    def copy(self) -> WeightedSum:
        """An independent running sum that starts where this one is (tensors are shared, never changed in place)."""
        other = copy.copy(self)
        other.sums, other.buffers = dict(self.sums), dict(self.buffers)
        return other

    def result(self, divide_by: float = 1.0) -> dict[str, torch.Tensor]:
        """``sum / divide_by`` in the first state dict's key order and dtypes; non-floating tensors come from
        the ingredient with the largest weight (the first one of a uniform soup)."""
        if self.layout is None or self.count == 0:
            raise ClipctlError("nothing to average: no checkpoint with a weight above 0")
        exact = self.count == 1 and self.total_weight == divide_by
        averaged = {}
        for key, dtype in self.layout.items():
            if key in self.buffers:
                averaged[key] = self.buffers[key].clone()
            elif exact and self.lone is not None:
                averaged[key] = self.lone[key].to(dtype, copy=True)
            else:
                averaged[key] = (self.sums[key] / divide_by).to(dtype)
        return averaged


def parse_weights(text: str, count: int) -> list[float]:
    """``--weights 0.5,0.3,0.2``: one non-negative number per checkpoint, summing to 1."""
    try:
        weights = [float(part) for part in text.split(",")]
    except ValueError:
        raise ClipctlError(f"--weights {text!r}: give comma-separated numbers, e.g. 0.5,0.5") from None
    if len(weights) != count:
        raise ClipctlError(f"--weights has {len(weights)} number(s) for {count} checkpoint(s); give one each")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ClipctlError(f"--weights {text!r}: every weight must be a finite number >= 0")
    if abs(sum(weights) - 1) > WEIGHT_SUM_TOLERANCE:
        raise ClipctlError(f"--weights {text!r} sum to {sum(weights):g}, not 1")
    return weights


def weighted_average(
    state_dicts: Iterable[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """``sum(w_i * sd_i)`` (weights summing to 1), or the uniform mean when ``weights`` is None."""
    total = WeightedSum()
    items = list(weights) if weights is not None else None
    for index, state_dict in enumerate(state_dicts):
        total.add(state_dict, 1.0 if items is None else items[index])
    return total.result(float(total.count) if items is None else 1.0)


def interpolate(
    zeroshot: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """WiSE-FT: ``(1 - alpha) * zeroshot + alpha * finetuned``, exactly the inputs at alpha 0 and 1."""
    return weighted_average([zeroshot, finetuned], [1.0 - alpha, alpha])
