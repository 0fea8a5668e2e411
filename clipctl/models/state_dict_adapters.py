"""The checkpoint-layout converters of tower families that have one, listed by the class they convert into.

``clipctl.checkpoint`` asks :func:`adapter_for` about each tower of a model before loading; a converter turns a
foreign layout (another project's key names, a re-parameterised form) into the tower's own keys. Converters are
imported only when a model holds such a tower, so loading a ViT never imports a ConvNet family.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

StateDictAdapter = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]

# "module.Class" of a tower -> "module:function" of its converter
ADAPTERS: dict[str, str] = {
    "clipctl.models.unireplknet.model.UniRepLKNet": "clipctl.models.unireplknet.checkpoint:adapt_state_dict",
}


def adapter_for(module: nn.Module) -> StateDictAdapter | None:
    cls = type(module)
    target = ADAPTERS.get(f"{cls.__module__}.{cls.__qualname__}")
    if target is None:
        return None
    module_name, function = target.split(":")
    return getattr(importlib.import_module(module_name), function)
