"""UniRepLKNet variants a..xl registered with timm (``timm.create_model("unireplknet_l")``), each a short
function of its arguments, built by one private builder that gives timm the checkpoint filter."""

from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from clipctl.models.unireplknet.checkpoint import checkpoint_filter_fn
from clipctl.models.unireplknet.model import UniRepLKNet

# --- builder and variants ------------------------------------------------------------------------------------------


def _create_unireplknet(variant: str, pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return build_model_with_cfg(
        UniRepLKNet,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        **kwargs,
    )


def _cfg(**kwargs) -> dict:
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        # The official ImageNet training code uses ImageNet mean/std.
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "downsample_layers.0.0",
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2311.15599",
        **kwargs,
    }


def _hub(filename: str, **kwargs) -> dict:
    return _cfg(hf_hub_id="DingXiaoH/UniRepLKNet", hf_hub_filename=filename, **kwargs)


# The official ImageNet weights (file names from the official model file's download table). The 22k-pretrained
# checkpoints keep their 21,841-class heads; 384 px fine-tunes are evaluated without a centre crop (assumed, the
# official eval crop for them is not stated).
_IN22K = dict(num_classes=21841)
_AT_384 = dict(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0)
default_cfgs = generate_default_cfgs(
    {
        "unireplknet_a.in1k": _hub("unireplknet_a_in1k_224_acc77.03.pth"),
        "unireplknet_f.in1k": _hub("unireplknet_f_in1k_224_acc78.58.pth"),
        "unireplknet_p.in1k": _hub("unireplknet_p_in1k_224_acc80.23.pth"),
        "unireplknet_n.in1k": _hub("unireplknet_n_in1k_224_acc81.64.pth"),
        "unireplknet_t.in1k": _hub("unireplknet_t_in1k_224_acc83.21.pth"),
        "unireplknet_s.in1k": _hub("unireplknet_s_in1k_224_acc83.91.pth"),
        "unireplknet_s.in22k_ft_in1k_384": _hub("unireplknet_s_in22k_to_in1k_384_acc86.44.pth", **_AT_384),
        "unireplknet_s.in22k": _hub("unireplknet_s_in22k_pretrain.pth", **_IN22K),
        "unireplknet_b.in22k_ft_in1k_384": _hub("unireplknet_b_in22k_to_in1k_384_acc87.40.pth", **_AT_384),
        "unireplknet_b.in22k": _hub("unireplknet_b_in22k_pretrain.pth", **_IN22K),
        "unireplknet_l.in22k_ft_in1k_384": _hub("unireplknet_l_in22k_to_in1k_384_acc87.88.pth", **_AT_384),
        "unireplknet_l.in22k": _hub(
            "unireplknet_l_in22k_pretrain.pth", input_size=(3, 192, 192), pool_size=(6, 6), **_IN22K
        ),
        "unireplknet_xl.in22k_ft_in1k_384": _hub("unireplknet_xl_in22k_to_in1k_384_acc87.96.pth", **_AT_384),
        "unireplknet_xl.in22k": _hub(
            "unireplknet_xl_in22k_pretrain.pth", input_size=(3, 192, 192), pool_size=(6, 6), **_IN22K
        ),
    }
)


def _variant(name: str, pretrained: bool, arch: dict, kwargs: dict) -> UniRepLKNet:
    # Explicit depths/dims/kernel_sizes win, so reduced layouts can be built under a variant's name.
    return _create_unireplknet(name, pretrained=pretrained, **{**arch, **kwargs})


@register_model
def unireplknet_a(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant("unireplknet_a", pretrained, dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)), kwargs)


@register_model
def unireplknet_f(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant("unireplknet_f", pretrained, dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)), kwargs)


@register_model
def unireplknet_p(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant("unireplknet_p", pretrained, dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)), kwargs)


@register_model
def unireplknet_n(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant("unireplknet_n", pretrained, dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)), kwargs)


@register_model
def unireplknet_t(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant("unireplknet_t", pretrained, dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640)), kwargs)


@register_model
def unireplknet_s(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant("unireplknet_s", pretrained, dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)), kwargs)


@register_model
def unireplknet_b(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant(
        "unireplknet_b", pretrained, dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)), kwargs
    )


@register_model
def unireplknet_l(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant(
        "unireplknet_l", pretrained, dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)), kwargs
    )


@register_model
def unireplknet_xl(pretrained: bool = False, **kwargs) -> UniRepLKNet:
    return _variant(
        "unireplknet_xl", pretrained, dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)), kwargs
    )
