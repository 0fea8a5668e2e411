"""Vision tower around any timm-registered trunk, plus an optional pooling/projection head."""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import nn

from clipctl.errors import ClipctlError, UnknownNameError
from clipctl.models.layers import freeze_batch_norm_2d, to_2tuple

TIMM_POOLS = ("", "avg", "token", "map", "abs_attn", "rot_attn", "max", "avgmax", "catavgmax")
TIMM_PROJS = ("linear", "mlp", "none", "", None)

log = logging.getLogger(__name__)


class TimmModel(nn.Module):
    """`visual.trunk` is the timm model (keys are timm's own), `visual.head` the CLIP adapter."""

    def __init__(
        self,
        model_name: str,
        embed_dim: int,
        image_size: int | tuple[int, int] = 224,
        pool: str = "avg",
        proj: str | None = "linear",
        proj_bias: bool = False,
        drop: float = 0.0,
        drop_path: float | None = None,
        patch_drop: float | None = None,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        import timm
        from timm.layers import AttentionPool2d, Mlp, RotAttentionPool2d

        if not timm.is_model(model_name):
            raise UnknownNameError("timm model", model_name, [])
        if pool not in TIMM_POOLS:
            raise ClipctlError(
                f"unknown timm_pool {pool!r} (known: {', '.join(repr(p) for p in TIMM_POOLS)})"
            )
        if proj not in TIMM_PROJS:
            raise ClipctlError(f"unknown timm_proj {proj!r} (known: linear, mlp, none)")
        self.image_size = to_2tuple(image_size)
        kwargs: dict = {}
        if drop_path is not None:
            kwargs["drop_path_rate"] = drop_path
        if patch_drop is not None:
            kwargs["patch_drop_rate"] = patch_drop

        custom_pool = pool in ("abs_attn", "rot_attn")
        extra_proj = proj in ("linear", "mlp")
        if not extra_proj and not custom_pool:
            # the trunk's own classifier is the projection (or nothing with proj 'none')
            num_classes = 0 if proj == "none" else embed_dim
            self.trunk = timm.create_model(
                model_name, num_classes=num_classes, global_pool=pool, pretrained=pretrained, **kwargs
            )
            prev_chs = embed_dim
        else:
            self.trunk = timm.create_model(model_name, pretrained=pretrained, **kwargs)
            feat_size = self.trunk.default_cfg.get("pool_size", None)
            if custom_pool:
                if not feat_size:
                    raise ClipctlError(f"timm_pool {pool!r} needs a trunk with a 2-D feature map")
                self.trunk.reset_classifier(0, global_pool="")
            else:
                self.trunk.reset_classifier(0, **({"global_pool": pool} if pool else {}))
            prev_chs = self.trunk.num_features

        head: OrderedDict[str, nn.Module] = OrderedDict()
        if pool == "abs_attn":
            head["pool"] = AttentionPool2d(prev_chs, feat_size=feat_size, out_features=embed_dim)
            prev_chs = embed_dim
        elif pool == "rot_attn":
            head["pool"] = RotAttentionPool2d(prev_chs, out_features=embed_dim)
            prev_chs = embed_dim
        if proj == "linear":
            head["drop"] = nn.Dropout(drop)
            head["proj"] = nn.Linear(prev_chs, embed_dim, bias=proj_bias)
        elif proj == "mlp":
            head["mlp"] = Mlp(prev_chs, 2 * embed_dim, embed_dim, drop=(drop, 0), bias=(True, proj_bias))
        self.head = nn.Sequential(head)

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk, leaving its last `unlocked_groups` timm layer groups trainable."""
        if not unlocked_groups:
            for param in self.trunk.parameters():
                param.requires_grad = False
            if freeze_bn_stats:
                freeze_batch_norm_2d(self.trunk)
            return
        from timm.models import group_modules, group_parameters

        matcher = self.trunk.group_matcher()
        groups = group_parameters(self.trunk, matcher)
        last_locked = max(groups.keys()) - unlocked_groups
        for group_idx in range(last_locked + 1):
            for name in groups.get(group_idx, []):
                self.trunk.get_parameter(name).requires_grad = False
        if freeze_bn_stats:
            modules = group_modules(self.trunk, matcher, reverse=True)
            freeze_batch_norm_2d(self.trunk, {k for k, v in modules.items() if v <= last_locked})

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        try:
            self.trunk.set_grad_checkpointing(enable)
        except Exception:  # timm raises assorted errors for trunks without support
            log.warning("grad checkpointing is not supported by this timm trunk; continuing without it")

    def set_input_size(self, image_size: int | tuple[int, int]) -> None:
        self.image_size = to_2tuple(image_size)
        if hasattr(self.trunk, "set_input_size"):
            self.trunk.set_input_size(img_size=self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
