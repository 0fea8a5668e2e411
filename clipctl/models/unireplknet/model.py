"""UniRepLKNet's modules: the dilated re-parameterisation block, the block, the stage and the trunk, with the
kernel arithmetic that folds them for inference. See the package docstring for the architecture."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, trunc_normal_
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger("clipctl")

__all__ = [
    "DilatedReparamBlock",
    "UniRepLKNet",
    "UniRepLKNetBlock",
    "dilate_kernel",
    "fuse_conv_bn",
    "pad_kernel_to",
    "reparameterize_model",
]

# Branches of the dilated re-parameterisation block per large kernel size K: (small kernel sizes, dilations).
# Each branch covers r*(k-1)+1 pixels, never more than K, so it merges into the K x K kernel.
_DILATED_BRANCHES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    7: ((5, 3, 3), (1, 2, 3)),
    5: ((3, 3), (1, 2)),
}


# --- re-parameterisation arithmetic (shared by the modules and the state-dict converter) ------------------------


def fuse_conv_bn(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    bn_weight: torch.Tensor,
    bn_bias: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to ``BN(conv(x))`` with BN in eval mode (computed in float32 or
    wider, whatever the parameters' dtypes)."""
    weight, bn_weight, bn_bias, running_mean, running_var = map(
        _wide, (weight, bn_weight, bn_bias, running_mean, running_var)
    )
    scale = bn_weight / torch.sqrt(running_var + eps)
    bias = torch.zeros_like(running_mean) if bias is None else _wide(bias)
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), bn_bias + (bias - running_mean) * scale


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors in float32, so that folding does not round at every step."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def dilate_kernel(weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """The dense kernel a dilated conv applies: ``dilation - 1`` zeros between taps."""
    if dilation == 1:
        return weight
    out_ch, in_ch, kh, kw = weight.shape
    dense = weight.new_zeros(out_ch, in_ch, dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    dense[:, :, ::dilation, ::dilation] = weight
    return dense


def pad_kernel_to(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad an odd, centred kernel to ``size x size``; with 'same' padding the conv's output is unchanged."""
    pad = (size - weight.shape[-1]) // 2
    return F.pad(weight, [pad, pad, pad, pad]) if pad else weight


def _bn_tensors(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, ...]:
    return bn.weight, bn.bias, bn.running_mean, bn.running_var


# --- building blocks ---------------------------------------------------------------------------------------------


class NCHWtoNHWC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class NHWCtoNCHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class GRNwithNHWC(nn.Module):
    """Global response normalisation (ConvNeXt V2) on channels-last input.

    ``gamma``/``beta`` keep the official (1, 1, 1, C) shapes; the bias disappears after re-parameterisation
    because the following Linear absorbs it.
    """

    def __init__(self, dim: int, use_bias: bool = True):
        super().__init__()
        self.use_bias = use_bias
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        if use_bias:
            self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        # Casts keep x's dtype when only conv/linear weights were converted to half precision.
        gamma = self.gamma.to(x.dtype)
        if self.use_bias:
            return (gamma * nx + 1) * x + self.beta.to(x.dtype)
        return (gamma * nx + 1) * x


class SEBlock(nn.Module):
    """Squeeze-and-excitation with 1x1 convs (``down``/``up``), ReLU and a sigmoid gate."""

    def __init__(self, channels: int, internal_channels: int):
        super().__init__()
        self.down = nn.Conv2d(channels, internal_channels, kernel_size=1, bias=True)
        self.up = nn.Conv2d(internal_channels, channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.up(F.relu(self.down(s))))
        return x * s


def _depthwise_conv(channels: int, kernel_size: int, dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    padding = (dilation * (kernel_size - 1) + 1) // 2
    return nn.Conv2d(
        channels, channels, kernel_size, padding=padding, dilation=dilation, groups=channels, bias=bias
    )


class DilatedReparamBlock(nn.Module):
    """Large depthwise kernel plus parallel dilated small kernels, each with its own BatchNorm.

    The dilated branches give the large kernel a learned sparse pattern during training at little cost; after
    training they are exactly a K x K kernel, so ``reparameterize()`` merges everything into ``lk_origin``.
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool = False):
        super().__init__()
        if kernel_size not in _DILATED_BRANCHES:
            raise ValueError(
                f"DilatedReparamBlock supports kernel sizes {sorted(_DILATED_BRANCHES)}, got {kernel_size}"
            )
        self.kernel_size = kernel_size
        self.kernel_sizes, self.dilations = _DILATED_BRANCHES[kernel_size]
        self.lk_origin = _depthwise_conv(channels, kernel_size, bias=deploy)
        self.deploy = deploy
        if not deploy:
            self.origin_bn = nn.BatchNorm2d(channels)
            # Attribute names are the official checkpoint keys, hence setattr rather than a ModuleDict.
            for k, r in zip(self.kernel_sizes, self.dilations, strict=True):
                setattr(self, f"dil_conv_k{k}_{r}", _depthwise_conv(channels, k, dilation=r))
                setattr(self, f"dil_bn_k{k}_{r}", nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in zip(self.kernel_sizes, self.dilations, strict=True):
            out = out + getattr(self, f"dil_bn_k{k}_{r}")(getattr(self, f"dil_conv_k{k}_{r}")(x))
        return out

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The K x K weight and bias equal to this block in eval mode."""
        weight, bias = fuse_conv_bn(
            self.lk_origin.weight, None, *_bn_tensors(self.origin_bn), eps=self.origin_bn.eps
        )
        for k, r in zip(self.kernel_sizes, self.dilations, strict=True):
            conv, bn = getattr(self, f"dil_conv_k{k}_{r}"), getattr(self, f"dil_bn_k{k}_{r}")
            branch_w, branch_b = fuse_conv_bn(conv.weight, None, *_bn_tensors(bn), eps=bn.eps)
            weight = weight + pad_kernel_to(dilate_kernel(branch_w, r), self.kernel_size)
            bias = bias + branch_b
        return weight, bias

    @torch.no_grad()
    def reparameterize(self, following_bn: nn.BatchNorm2d | None = None) -> None:
        """Merge BatchNorms and dilated branches into ``lk_origin`` (idempotent). ``following_bn``, a BatchNorm
        applied to this block's output, is folded in too, before any rounding to the weights' dtype."""
        if self.deploy:
            return
        weight, bias = self.merged_kernel()
        if following_bn is not None:
            weight, bias = fuse_conv_bn(weight, bias, *_bn_tensors(following_bn), eps=following_bn.eps)
        dtype = self.lk_origin.weight.dtype
        merged = _depthwise_conv(weight.shape[0], self.kernel_size, bias=True).to(weight.device, dtype)
        merged.weight.copy_(weight)
        merged.bias.copy_(bias)
        self.lk_origin = merged
        del self.origin_bn
        for k, r in zip(self.kernel_sizes, self.dilations, strict=True):
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")
        self.deploy = True


class UniRepLKNetBlock(nn.Module):
    """One block: depthwise (large) kernel, BN, SE, then an inverted-bottleneck FFN with GRN and layer scale."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        deploy: bool = False,
        ffn_factor: int = 4,
    ):
        super().__init__()
        self.deploy = deploy
        self.grad_checkpointing = False
        if kernel_size == 0:
            self.dwconv = nn.Identity()
        elif kernel_size >= 7:
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy)
        elif kernel_size in (3, 5):
            self.dwconv = _depthwise_conv(dim, kernel_size, bias=deploy)
        else:
            raise ValueError(f"UniRepLKNet block kernel size must be 0, 3, 5 or >= 7, got {kernel_size}")
        self.norm = nn.Identity() if deploy or kernel_size == 0 else nn.BatchNorm2d(dim)
        self.se = SEBlock(dim, dim // 4)
        hidden = ffn_factor * dim
        self.pwconv1 = nn.Sequential(NCHWtoNHWC(), nn.Linear(dim, hidden))
        self.act = nn.Sequential(nn.GELU(), GRNwithNHWC(hidden, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(hidden, dim, bias=True), NHWCtoNCHW())
        else:
            self.pwconv2 = nn.Sequential(
                nn.Linear(hidden, dim, bias=False), NHWCtoNCHW(), nn.BatchNorm2d(dim)
            )
        if not deploy and layer_scale_init_value is not None and layer_scale_init_value > 0:
            self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        else:
            self.register_parameter("gamma", None)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = y * self.gamma.to(y.dtype).view(1, -1, 1, 1)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and x.requires_grad and not torch.jit.is_scripting():
            y = checkpoint(self.residual, x, use_reentrant=False)
        else:
            y = self.residual(x)
        return x + self.drop_path(y)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every BatchNorm, the dilated branches, the GRN bias and the layer scale (idempotent)."""
        if self.deploy:
            return
        # 1. dwconv (+ its branches) and the BN after it become one biased depthwise conv.
        if isinstance(self.dwconv, DilatedReparamBlock):
            norm = self.norm if isinstance(self.norm, nn.BatchNorm2d) else None
            if not self.dwconv.deploy:
                self.dwconv.reparameterize(following_bn=norm)
            elif norm is not None:  # the dilated block was merged on its own earlier
                conv = self.dwconv.lk_origin
                w, b = fuse_conv_bn(conv.weight, conv.bias, *_bn_tensors(norm), eps=norm.eps)
                conv.weight.copy_(w)
                conv.bias.copy_(b)
        elif isinstance(self.dwconv, nn.Conv2d):
            old = self.dwconv
            w, b = fuse_conv_bn(old.weight, old.bias, *_bn_tensors(self.norm), eps=self.norm.eps)
            self.dwconv = _depthwise_conv(old.in_channels, old.kernel_size[0], bias=True)
            self.dwconv.to(w.device, old.weight.dtype)
            self.dwconv.weight.copy_(w)
            self.dwconv.bias.copy_(b)
        self.norm = nn.Identity()

        # 2. GRN bias, pwconv2's BN and the layer scale are affine maps around one Linear: fold them into it.
        grn = self.act[1]
        linear, bn = self.pwconv2[0], self.pwconv2[2]
        scale = _wide(bn.weight) / torch.sqrt(_wide(bn.running_var) + bn.eps)
        layer_scale = _wide(self.gamma) if self.gamma is not None else torch.ones_like(scale)
        linear_w = _wide(linear.weight)
        grn_shift = linear_w @ _wide(grn.beta).reshape(-1)
        weight = linear_w * (scale * layer_scale)[:, None]
        bias = (_wide(bn.bias) + (grn_shift - _wide(bn.running_mean)) * scale) * layer_scale
        fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
        fused.to(weight.device, linear.weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.pwconv2 = nn.Sequential(fused, NHWCtoNCHW())
        del grn.beta
        grn.use_bias = False
        self.gamma = None
        self.deploy = True


class UniRepLKNetStage(nn.Sequential):
    """The blocks of one stage. A plain ``Sequential`` so block keys stay ``stages.{s}.{b}.*``."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__(*blocks)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for block in self:
            block.grad_checkpointing = enable


# --- the model ---------------------------------------------------------------------------------------------------

_KERNELS_2262 = ((3, 3), (13, 13), (13,) * 6, (13, 13))
_KERNELS_2282 = ((3, 3), (13, 13), (13,) * 8, (13, 13))
_KERNELS_33183 = ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13))
_KERNELS_33273 = ((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13))
_DEFAULT_KERNELS = {
    (2, 2, 6, 2): _KERNELS_2262,
    (2, 2, 8, 2): _KERNELS_2282,
    (3, 3, 18, 3): _KERNELS_33183,
    (3, 3, 27, 3): _KERNELS_33273,
}


def _check_layout(
    depths: Sequence[int],
    dims: Sequence[int],
    kernel_sizes: Sequence[Sequence[int]] | None,
    global_pool: str,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Depths, widths and per-block kernel sizes of the four stages as tuples (default kernels by depths)."""
    depths, dims = tuple(depths), tuple(dims)
    if len(depths) != 4 or len(dims) != 4:
        raise ValueError(f"UniRepLKNet needs 4 stages, got depths={depths} dims={dims}")
    if kernel_sizes is None:
        if depths not in _DEFAULT_KERNELS:
            raise ValueError(f"no default kernel sizes for depths {depths}; pass kernel_sizes explicitly")
        kernel_sizes = _DEFAULT_KERNELS[depths]
    kernel_sizes = tuple(tuple(k) for k in kernel_sizes)
    if tuple(len(k) for k in kernel_sizes) != depths:
        raise ValueError(f"kernel_sizes {kernel_sizes} do not match depths {depths}")
    if global_pool not in ("avg", ""):
        raise ValueError(f"UniRepLKNet supports global_pool 'avg' or '', got {global_pool!r}")
    return depths, dims, kernel_sizes


def _downsample_layers(in_chans: int, dims: tuple[int, ...]) -> nn.ModuleList:
    """The stem (two stride-2 convolutions, to stride 4) and the stride-2 downsampling before stages 1-3."""
    stem = nn.Sequential(
        nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=2, padding=1),
        LayerNorm2d(dims[0] // 2, eps=1e-6),
        nn.GELU(),
        nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1),
        LayerNorm2d(dims[0], eps=1e-6),
    )
    layers = [stem]
    for i in range(3):
        layers.append(
            nn.Sequential(
                nn.Conv2d(dims[i], dims[i + 1], kernel_size=3, stride=2, padding=1),
                LayerNorm2d(dims[i + 1], eps=1e-6),
            )
        )
    return nn.ModuleList(layers)


def _stages(
    depths: tuple[int, ...],
    dims: tuple[int, ...],
    kernel_sizes: tuple[tuple[int, ...], ...],
    drop_path_rate: float,
    layer_scale_init_value: float,
    deploy: bool,
    ffn_factor: int,
) -> list[UniRepLKNetStage]:
    """The four stages; the drop-path rate rises linearly over all blocks from 0 to ``drop_path_rate``."""
    total = sum(depths)
    # Same values as torch.linspace, computed in Python so models can be built on the meta device.
    rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    stages = []
    for i in range(4):
        first = sum(depths[:i])
        blocks = [
            UniRepLKNetBlock(
                dims[i],
                kernel_sizes[i][j],
                drop_path=rates[first + j],
                layer_scale_init_value=layer_scale_init_value,
                deploy=deploy,
                ffn_factor=ffn_factor,
            )
            for j in range(depths[i])
        ]
        stages.append(UniRepLKNetStage(blocks))
    return stages


class UniRepLKNet(nn.Module):
    """UniRepLKNet classifier / feature trunk with timm's model interface.

    The head is ``head(norm(mean_hw(x)))``: global average pool, LayerNorm, Linear. ``num_classes=0`` replaces
    the Linear with Identity (pooled, normed features), ``global_pool=''`` keeps the spatial map (normed per
    position).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (3, 3, 27, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        kernel_sizes: Sequence[Sequence[int]] | None = None,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
        deploy: bool = False,
        ffn_factor: int = 4,
        **kwargs,
    ):
        super().__init__()
        depths, dims, kernel_sizes = _check_layout(depths, dims, kernel_sizes, global_pool)
        kwargs.pop("pretrained_cfg", None)
        kwargs.pop("pretrained_cfg_overlay", None)
        if kwargs:
            raise TypeError(f"UniRepLKNet got unexpected arguments: {', '.join(sorted(kwargs))}")

        self.num_classes = num_classes
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.depths, self.dims, self.kernel_sizes = depths, dims, kernel_sizes
        self.deploy = deploy
        self.grad_checkpointing = False

        self.downsample_layers = _downsample_layers(in_chans, dims)
        self.stages = nn.ModuleList(
            _stages(depths, dims, kernel_sizes, drop_path_rate, layer_scale_init_value, deploy, ffn_factor)
        )
        self.feature_info = [
            dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f"stages.{i}") for i in range(4)
        ]

        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()

        self.apply(self._init_weights)
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(head_init_scale)
                self.head.bias.mul_(head_init_scale)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # timm interface ---------------------------------------------------------------------------------------------

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^downsample_layers\.0\.",
            blocks=r"^(?:downsample_layers|stages)\.(\d+)"
            if coarse
            else [
                (r"^downsample_layers\.(\d+)\.", (0,)),
                (r"^stages\.(\d+)\.(\d+)\.", None),
                (r"^norm\.", (99999,)),
            ],
        )

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.set_grad_checkpointing(enable)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"UniRepLKNet supports global_pool 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            self._init_weights(self.head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = self.norm(x.mean(dim=(-2, -1)))
        else:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (strides 4, 8, 16, 32) as timm's ``forward_intermediates``; ``norm`` is not supported
        because the official model has no per-stage norms outside its OpenMMLab feature mode."""
        if output_fmt != "NCHW":
            raise ValueError("UniRepLKNet intermediates are NCHW only")
        if norm:
            raise ValueError("UniRepLKNet has no per-stage norms for normalize_intermediates")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        intermediates = []
        last = max_index if stop_early else len(self.stages) - 1
        for i in range(last + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Switch to the inference structure in place; outputs in eval mode are unchanged (idempotent)."""
        for stage in self.stages:
            for block in stage:
                block.reparameterize()
        self.deploy = True

    # The official method name, for code written against the original file.
    reparameterize_unireplknet = reparameterize


def reparameterize_model(model: nn.Module) -> nn.Module:
    """Re-parameterise, in place, every submodule of ``model`` that has a ``reparameterize()`` method (a CLIP
    model with a UniRepLKNet trunk, a bare trunk, or timm's re-parameterisable models) and return ``model``."""
    for module in list(model.modules()):
        method = getattr(module, "reparameterize", None)
        if callable(method):
            method()
    return model
