"""Sharding a model over the ranks with FSDP2 (``torch.distributed.fsdp.fully_shard``): which modules become
sharding units, the mixed-precision policy, and reading values that are sharded.

Units, innermost first: every block of a layer list (transformer blocks of the image tower, the text tower and
CoCa's decoder; the stages of a timm / UniRepLKNet trunk; the layers of a Hugging Face text encoder), then each
tower (``visual``, ``text``, ``text_decoder``, CLIP's ``token_embedding``), then the root with what is left
(logit scale and bias, CLIP's text-tower leftovers). Each unit's parameters are gathered just before its forward
and freed after it (``--fsdp-reshard-after-forward``), so a rank holds its shard of everything plus about one
unit's full parameters at a time.

Frozen parameters (``--lock-image``/``--lock-text``) stay in their units: FSDP2 shards per parameter and
reduces only the gradients that exist, so a unit may mix frozen and trainable parameters.

FSDP2 cannot shard 0-d tensors, so :func:`prepare_for_sharding` makes the scalar ``logit_scale`` /
``logit_bias`` 1-element vectors first (the shape OpenCLIP's ``nonscalar_logit_scale`` models have; loading
reshapes them back, see ``clipctl.checkpoint.adapt_state_dict``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from clipctl.runtime import PrecisionPlan

# attribute names of the module lists whose items are sharding units (and grad-checkpointing units)
_LAYER_LISTS = ("resblocks", "cross_attn", "blocks", "stages", "layer", "layers")
_TOWERS = ("visual", "text", "text_decoder", "token_embedding")


def block_units(model: nn.Module) -> list[nn.Module]:
    """The items of the outermost layer lists (blocks, stages), in model order."""
    units: list[nn.Module] = []
    for name, child in model.named_children():
        if name in _LAYER_LISTS and isinstance(child, (nn.ModuleList, nn.Sequential)) and len(child):
            units.extend(child)
        else:
            units.extend(block_units(child))
    return units


def tower_units(model: nn.Module) -> list[nn.Module]:
    return [getattr(model, name) for name in _TOWERS if isinstance(getattr(model, name, None), nn.Module)]


def prepare_for_sharding(model: nn.Module) -> None:
    """Turn 0-d parameters (``logit_scale``, ``logit_bias``) into 1-element vectors, which FSDP2 can shard."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if param.dim() == 0:
                vector = nn.Parameter(param.detach().reshape(1), requires_grad=param.requires_grad)
                setattr(module, name, vector)


def mixed_precision_policy(plan: PrecisionPlan):  # noqa: ANN201 - torch's MixedPrecisionPolicy
    """FSDP's policy from the run's precision plan: autocast's dtype becomes the dtype the gathered parameters
    compute in; gradients are reduced and master weights kept in float32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if plan.autocast_dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=plan.autocast_dtype, reduce_dtype=torch.float32)


def shard_model(
    model: nn.Module,
    *,
    device: torch.device,
    world_size: int,
    plan: PrecisionPlan,
    reshard_after_forward: bool = True,
    cpu_offload: bool = False,
    compile_blocks: bool = False,
) -> nn.Module:
    """Apply ``fully_shard`` to the blocks, the towers and the root of ``model`` (in place; returns it).

    With ``compile_blocks`` each block is compiled before it is sharded (the pattern FSDP2 supports; compiling
    the sharded model as a whole breaks its graph at every unit)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    options = {
        "mesh": mesh,
        "reshard_after_forward": reshard_after_forward,
        "mp_policy": mixed_precision_policy(plan),
    }
    if cpu_offload:
        options["offload_policy"] = CPUOffloadPolicy()
    for unit in block_units(model):
        if compile_blocks:
            unit.compile()
        fully_shard(unit, **options)
    for unit in tower_units(model):
        fully_shard(unit, **options)
    fully_shard(model, **options)
    return model


@contextlib.contextmanager
def root_gathered(model: nn.Module) -> Iterator[None]:
    """Keep the root unit's parameters gathered for a block of ``encode_image`` / ``encode_text`` calls
    (zero-shot evaluation): FSDP gathers a unit's parameters around ``forward`` only. The towers and blocks are
    units of their own and gather theirs as usual; the root holds little (logit scale, CLIP's text leftovers).
    A no-op for an unsharded model."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """The whole value of a possibly sharded tensor. A collective for a DTensor: every rank must call it."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def local_bytes(tensor: torch.Tensor | None) -> int:
    """Bytes this rank holds of ``tensor`` (its shard for a DTensor)."""
    if tensor is None:
        return 0
    from torch.distributed.tensor import DTensor

    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    return local.numel() * local.element_size()
