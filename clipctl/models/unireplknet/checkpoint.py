"""Loading UniRepLKNet weights in every layout seen in the wild: a bare trunk or a whole CLIP state dict under
``visual.trunk.``, training or deploy (re-parameterised) form, with the trunk's head or ``visual.head.proj`` as the
projection; a state dict that would load only in part is refused with the keys named.

``clipctl.checkpoint`` calls :func:`adapt_state_dict` for a model whose image trunk is a UniRepLKNet (see
``clipctl.models.state_dict_adapters``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from clipctl.errors import CheckpointError
from clipctl.models.unireplknet.model import (
    UniRepLKNet,
    dilate_kernel,
    fuse_conv_bn,
    logger,
    pad_kernel_to,
)

_TRUNK_ROOTS = ("downsample_layers.", "stages.", "norm.", "head.")
_SOURCE_PREFIXES = ("visual.trunk.", "trunk.", "visual.", "")
_BLOCK_KEY = re.compile(r"^(stages\.\d+\.\d+\.)(.*)$")


def _is_train_form(keys: Sequence[str]) -> bool:
    return any(".pwconv2.2." in k or k.endswith(".act.1.beta") for k in keys if k.startswith("stages."))


def _is_deploy_form(keys: Sequence[str]) -> bool:
    return any(k.endswith(".pwconv2.0.bias") for k in keys if k.startswith("stages."))


def _pop_bn(sd: dict[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, ...]:
    tensors = tuple(sd.pop(prefix + name) for name in ("weight", "bias", "running_mean", "running_var"))
    sd.pop(prefix + "num_batches_tracked", None)
    return tensors


@torch.no_grad()
def reparameterize_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert an official training-form trunk state dict (bare keys) to the deploy form, block by block,
    with the same arithmetic as ``UniRepLKNetBlock.reparameterize`` (BN eps 1e-5, the official default)."""
    out: dict[str, torch.Tensor] = {}
    blocks: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            blocks.setdefault(match.group(1), {})[match.group(2)] = value
        else:
            out[key] = value
    for prefix, sd in blocks.items():
        sd = dict(sd)
        if "dwconv.origin_bn.weight" in sd:
            weight = sd.pop("dwconv.lk_origin.weight")
            size = weight.shape[-1]
            weight, bias = fuse_conv_bn(weight.float(), None, *_pop_bn(sd, "dwconv.origin_bn."))
            for name in [k for k in sd if k.startswith("dwconv.dil_conv_k")]:  # checkpoint (official) order
                k, r = (int(v) for v in re.match(r"dwconv\.dil_conv_k(\d+)_(\d+)\.weight", name).groups())
                branch_w, branch_b = fuse_conv_bn(
                    sd.pop(name).float(), None, *_pop_bn(sd, f"dwconv.dil_bn_k{k}_{r}.")
                )
                weight = weight + pad_kernel_to(dilate_kernel(branch_w, r), size)
                bias = bias + branch_b
            if "norm.weight" in sd:
                weight, bias = fuse_conv_bn(weight, bias, *_pop_bn(sd, "norm."))
            sd["dwconv.lk_origin.weight"], sd["dwconv.lk_origin.bias"] = weight, bias
        elif "dwconv.weight" in sd and "norm.weight" in sd:
            sd["dwconv.weight"], sd["dwconv.bias"] = fuse_conv_bn(
                sd["dwconv.weight"].float(), None, *_pop_bn(sd, "norm.")
            )
        if "pwconv2.2.weight" in sd:
            linear_w = sd.pop("pwconv2.0.weight").float()
            bn_w, bn_b, mean, var = _pop_bn(sd, "pwconv2.2.")
            scale = bn_w / torch.sqrt(var + 1e-5)
            gamma = sd.pop("gamma", None)
            layer_scale = gamma if gamma is not None else torch.ones_like(scale)
            beta = sd.pop("act.1.beta").reshape(-1)
            sd["pwconv2.0.weight"] = linear_w * (scale * layer_scale)[:, None]
            sd["pwconv2.0.bias"] = (bn_b + (linear_w @ beta - mean) * scale) * layer_scale
        for key, value in sd.items():
            out[prefix + key] = value
    return out


def _find_trunk_prefix(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    for prefix in _SOURCE_PREFIXES:
        if f"{prefix}downsample_layers.0.0.weight" in state_dict:
            return prefix
    return None


def _split_trunk(
    state_dict: Mapping[str, torch.Tensor], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    trunk, rest = {}, {}
    for key, value in state_dict.items():
        bare = key[len(prefix) :] if key.startswith(prefix) else None
        if bare is not None and bare.startswith(_TRUNK_ROOTS):
            trunk[bare] = value
        else:
            rest[key] = value
    return trunk, rest


def _first(keys: Sequence[str], limit: int = 4) -> str:
    keys = list(keys)
    more = f", ... {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _match_form(trunk_sd: dict[str, torch.Tensor], trunk: UniRepLKNet) -> dict[str, torch.Tensor]:
    """Bring a bare trunk state dict into the model's form (training or deploy)."""
    keys = list(trunk_sd)
    if trunk.deploy and _is_train_form(keys):
        converted = reparameterize_state_dict(trunk_sd)
        dtype = next(iter(trunk.state_dict().values())).dtype
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in converted.items()}
    if not trunk.deploy and _is_deploy_form(keys):
        # A merged checkpoint cannot be split back into branches: switch the model, which then runs exactly as
        # the network the checkpoint was taken from (it can still be trained, only without BN / branches).
        logger.warning(
            "UniRepLKNet checkpoint is in re-parameterised (deploy) form; switching the model's image trunk "
            "to the deploy structure to load it"
        )
        trunk.reparameterize()
    return trunk_sd


def load_trunk_state_dict(trunk: UniRepLKNet, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load UniRepLKNet weights in any layout into a bare trunk, strictly. An ImageNet classifier ``head.*``
    that does not fit the trunk (a CLIP image trunk has none) is dropped; anything else missing is an error."""
    filtered = checkpoint_filter_fn(state_dict, trunk)
    target = trunk.state_dict()
    missing = [k for k in target if k not in filtered]
    unexpected = [k for k in filtered if k not in target]
    shapes = [k for k in target if k in filtered and filtered[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        problems = [
            f"{len(items)} {label} ({_first(items)})"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes))
            if items
        ]
        raise CheckpointError("checkpoint does not fit the UniRepLKNet trunk: " + "; ".join(problems))
    trunk.load_state_dict(filtered, strict=True)


def checkpoint_filter_fn(
    state_dict: Mapping[str, torch.Tensor], model: UniRepLKNet
) -> dict[str, torch.Tensor]:
    """timm's pretrained-weights hook: official ImageNet or CLIP checkpoints -> this trunk's keys and form.

    Strips ``visual.trunk.`` / ``trunk.`` / ``visual.`` prefixes, drops a classifier head the model cannot take
    (missing or a different number of classes), and converts training-form weights for a deploy model.
    """
    if "model" in state_dict and isinstance(state_dict["model"], Mapping):
        state_dict = state_dict["model"]
    state_dict = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    prefix = _find_trunk_prefix(state_dict)
    if prefix is None:
        raise CheckpointError(
            "not a UniRepLKNet checkpoint: no downsample_layers.0.0.weight key in any layout"
        )
    trunk_sd, _ = _split_trunk(state_dict, prefix)
    head = model.head
    if "head.weight" in trunk_sd and (
        not isinstance(head, nn.Linear) or trunk_sd["head.weight"].shape != head.weight.shape
    ):
        trunk_sd.pop("head.weight")
        trunk_sd.pop("head.bias", None)
    return _match_form(trunk_sd, model)


def _trunk_of(model: nn.Module) -> tuple[UniRepLKNet, str] | None:
    if isinstance(model, UniRepLKNet):
        return model, ""
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if isinstance(trunk, UniRepLKNet):
        return trunk, "visual.trunk."
    return None


def _adapt_projection(
    trunk_sd: dict[str, torch.Tensor], rest: dict[str, torch.Tensor], model: nn.Module, trunk: UniRepLKNet
) -> None:
    """Move the image projection between the trunk's own ``head`` and the tower's ``visual.head.proj``."""
    target = model.state_dict()
    model_has_proj = "visual.head.proj.weight" in target
    model_trunk_head = isinstance(trunk.head, nn.Linear)
    if model_has_proj and "visual.head.proj.weight" not in rest and "head.weight" in trunk_sd:
        weight, bias = trunk_sd.pop("head.weight"), trunk_sd.pop("head.bias", None)
        if weight.shape != target["visual.head.proj.weight"].shape:
            # An ImageNet classifier, not a projection: leave it to be reported as an unexpected key.
            trunk_sd["head.weight"] = weight
            if bias is not None:
                trunk_sd["head.bias"] = bias
            return
        rest["visual.head.proj.weight"] = weight
        if "visual.head.proj.bias" in target:
            rest["visual.head.proj.bias"] = bias if bias is not None else torch.zeros(weight.shape[0])
        elif bias is not None and bool(bias.abs().max() > 0):
            raise CheckpointError(
                "the checkpoint's image projection (visual.trunk.head) has a non-zero bias but the model's "
                "visual.head.proj has none: use a model config with vision_cfg.timm_proj_bias = true"
            )
    elif model_trunk_head and "head.weight" not in trunk_sd and "visual.head.proj.weight" in rest:
        trunk_sd["head.weight"] = rest.pop("visual.head.proj.weight")
        bias = rest.pop("visual.head.proj.bias", None)
        trunk_sd["head.bias"] = bias if bias is not None else torch.zeros(trunk_sd["head.weight"].shape[0])


def convert_unireplknet_clip_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Any UniRepLKNet CLIP checkpoint layout -> the keys of ``model`` (a CLIP model with a UniRepLKNet trunk,
    or a bare trunk). Handles ``visual.trunk.`` / ``trunk.`` / ``visual.`` / no prefix, training or deploy form,
    and the projection stored as the trunk's ``head`` or as ``visual.head.proj``. State dicts that are not
    UniRepLKNet are returned unchanged."""
    found = _trunk_of(model)
    prefix = _find_trunk_prefix(state_dict)
    if found is None or prefix is None:
        return dict(state_dict)
    trunk, model_prefix = found
    trunk_sd, rest = _split_trunk(state_dict, prefix)
    if prefix == "trunk." and model_prefix:
        # The image tower saved on its own (trunk.* + head.proj.*): put it back under visual.
        rest = {(f"visual.{k}" if k.startswith("head.") else k): v for k, v in rest.items()}
    if model_prefix:
        _adapt_projection(trunk_sd, rest, model, trunk)
    trunk_sd = _match_form(trunk_sd, trunk)
    converted = dict(rest)
    converted.update({model_prefix + k: v for k, v in trunk_sd.items()})
    return converted


def check_unireplknet_fit(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    """Raise ``CheckpointError`` naming the keys when a converted state dict would load only part of the model's
    image trunk, or would leave everything outside the trunk (projection, text tower) at random init."""
    found = _trunk_of(model)
    if found is None:
        return
    trunk, model_prefix = found
    target = model.state_dict()
    trunk_keys = [k for k in target if k.startswith(model_prefix)]
    other_keys = [k for k in target if not k.startswith(model_prefix)]
    missing_trunk = [k for k in trunk_keys if k not in state_dict]
    shapes = [k for k in trunk_keys if k in state_dict and state_dict[k].shape != target[k].shape]
    if missing_trunk or shapes:
        form = "deploy" if trunk.deploy else "training"
        parts = [
            f"{len(missing_trunk)} of {len(trunk_keys)} image-trunk keys missing ({_first(missing_trunk)})"
        ]
        if shapes:
            parts.append(f"{len(shapes)} mis-shaped ({_first(shapes)})")
        raise CheckpointError(
            f"checkpoint does not fit this UniRepLKNet ({form} form, dims {list(trunk.dims)}): "
            + "; ".join(parts)
        )
    if model_prefix and other_keys and not any(k in state_dict for k in other_keys):
        raise CheckpointError(
            f"checkpoint holds only a UniRepLKNet image trunk: none of the model's {len(other_keys)} other keys "
            f"({_first(other_keys)}) are in it, so the projection and text tower would stay random. Load it into "
            "the trunk alone with clipctl.models.unireplknet.load_trunk_state_dict(model.visual.trunk, state_dict)"
        )


def adapt_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Hook called by ``clipctl.checkpoint`` when a model's image trunk is a UniRepLKNet: convert the layout,
    then refuse (naming keys) when only part of the model would load."""
    if _trunk_of(model) is None or _find_trunk_prefix(state_dict) is None:
        return state_dict
    converted = convert_unireplknet_clip_state_dict(state_dict, model)
    check_unireplknet_fit(converted, model)
    return converted
