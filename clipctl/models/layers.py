"""Small building blocks shared by the towers: norms, activations, layer scale, patch dropout, MLP."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def to_2tuple(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"expected an int or a pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in the weight dtype, returning the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig_type = x.dtype
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.to(orig_type)


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm computed in float32 (for fp16/bf16 weights), returning the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig_type = x.dtype
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        x = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return x.to(orig_type)


class QuickGELU(nn.Module):
    """The sigmoid GELU approximation OpenAI's CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float = 1e-5, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(self.gamma) if self.inplace else x * self.gamma


class PatchDropout(nn.Module):
    """Keeps a random subset of patch tokens while training (https://arxiv.org/abs/2212.00794)."""

    def __init__(self, prob: float = 0.5, exclude_first_token: bool = True) -> None:
        super().__init__()
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"patch dropout must be in [0, 1), got {prob}")
        self.prob = prob
        self.exclude_first_token = exclude_first_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob == 0.0:
            return x
        if self.exclude_first_token:
            prefix, x = x[:, :1], x[:, 1:]
        batch, num_tokens = x.shape[0], x.shape[1]
        num_keep = max(1, int(num_tokens * (1.0 - self.prob)))
        keep = torch.randn(batch, num_tokens, device=x.device).topk(num_keep, dim=-1).indices
        x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        if self.exclude_first_token:
            x = torch.cat((prefix, x), dim=1)
        return x


class MLP(nn.Sequential):
    """c_fc -> act -> c_proj, with the key names of CLIP checkpoints."""

    def __init__(self, width: int, hidden: int, act_layer: Callable[[], nn.Module] = nn.GELU) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, hidden)),
                    ("gelu", act_layer()),
                    ("c_proj", nn.Linear(hidden, width)),
                ]
            )
        )


def freeze_batch_norm_2d(module: nn.Module, module_names: set[str] | None = None) -> nn.Module:
    """Turn BatchNorm2d/SyncBatchNorm layers into frozen ones (fixed stats, no grads), in place.

    Returns the possibly replaced module (when `module` itself is a BatchNorm).
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    def convert(mod: nn.Module, name: str) -> nn.Module:
        if isinstance(mod, (nn.BatchNorm2d, nn.SyncBatchNorm)) and (
            module_names is None or name in module_names
        ):
            frozen = FrozenBatchNorm2d(mod.num_features, eps=mod.eps)
            if mod.affine:
                frozen.weight.data.copy_(mod.weight.data)
                frozen.bias.data.copy_(mod.bias.data)
            frozen.running_mean.data.copy_(mod.running_mean.data)
            frozen.running_var.data.copy_(mod.running_var.data)
            return frozen
        for child_name, child in list(mod.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            new_child = convert(child, full)
            if new_child is not child:
                setattr(mod, child_name, new_child)
        return mod

    return convert(module, "")
