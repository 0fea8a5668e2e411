"""The mixed-precision weight cast of OpenCLIP's 'fp16'/'bf16' modes (the precision table itself is in
:mod:`clipctl.runtime.precision`)."""

from __future__ import annotations

import torch
from torch import nn

_PARAM_PROJECTIONS = ("text_projection", "proj")


def convert_weights_to_lp(model: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """Cast matmul weights (linear, conv, attention, bare projection matrices) to `dtype`, in place.

    Norms, embeddings and the logit scale stay in their dtype, as in OpenCLIP's mixed 'fp16'/'bf16' modes.
    """
    from clipctl.models.clip import CLIP
    from clipctl.models.text import TextTransformer
    from clipctl.models.vit import VisionTransformer

    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
        if isinstance(module, nn.MultiheadAttention):
            for attr in (
                "in_proj_weight",
                "q_proj_weight",
                "k_proj_weight",
                "v_proj_weight",
                "in_proj_bias",
                "bias_k",
                "bias_v",
            ):
                tensor = getattr(module, attr, None)
                if tensor is not None:
                    tensor.data = tensor.data.to(dtype)
        if isinstance(module, (CLIP, TextTransformer, VisionTransformer)):
            for attr in _PARAM_PROJECTIONS:
                tensor = getattr(module, attr, None)
                if isinstance(tensor, nn.Parameter):
                    tensor.data = tensor.data.to(dtype)
    return model
