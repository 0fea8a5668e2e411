"""UniRepLKNet trunk: official key layout, sizes against the paper, re-parameterisation, timm interface."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path

import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from clipctl.models import unireplknet as urlk

# sha256 of "key<TAB>shape" lines of the official unireplknet_l state dicts (AILab-CVC/UniRepLKNet @ b5677d8,
# num_classes=1000), taken from /work/shared/notes/unireplknet_l_{,deploy_}keys.txt.
OFFICIAL_L_KEYS = (1305, "0cf2631cec23873fe17acdad656928dba6778af27768e23f326d87b2452ecaf9")
OFFICIAL_L_DEPLOY_KEYS = (420, "d652aa9226c34a22d74a3f3f03cad42b199f468482216c7acbc0e0f7b425a9f5")
NOTES = Path("/work/shared/notes")

# A reduced model with the big variants' layout: 3x3 stage 1, K13 stages 2 and 4, (13, 3, 3) stage 3.
SMALL_BIG_LAYOUT = dict(
    depths=(1, 1, 3, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (13,), (13, 3, 3), (13,))
)


def _key_lines(model: nn.Module) -> list[str]:
    return [f"{k}\t{tuple(v.shape)}" for k, v in model.state_dict().items()]


def _digest(lines: list[str]) -> tuple[int, str]:
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.parametrize("deploy, expected", [(False, OFFICIAL_L_KEYS), (True, OFFICIAL_L_DEPLOY_KEYS)])
def test_unireplknet_l_state_dict_matches_official_keys_and_shapes(deploy, expected):
    with torch.device("meta"):
        model = timm.create_model("unireplknet_l", deploy=deploy)
    lines = _key_lines(model)
    assert _digest(lines) == expected
    notes = NOTES / ("unireplknet_l_deploy_keys.txt" if deploy else "unireplknet_l_keys.txt")
    if notes.is_file():  # name the first differing key when the reference list is at hand
        ref = ["\t".join(line.split("\t")[:2]) for line in notes.read_text().splitlines() if line[:1] != "#"]
        assert lines == ref


def test_block_keys_use_official_names():
    model = timm.create_model("unireplknet_a", **SMALL_BIG_LAYOUT)
    keys = set(model.state_dict())
    for key in (
        "stages.1.0.dwconv.lk_origin.weight",
        "stages.1.0.dwconv.origin_bn.running_var",
        "stages.1.0.dwconv.dil_conv_k5_1.weight",
        "stages.1.0.dwconv.dil_conv_k7_2.weight",
        "stages.1.0.dwconv.dil_bn_k3_5.bias",
        "stages.0.0.dwconv.weight",
        "stages.2.1.dwconv.weight",
        "stages.0.0.se.down.weight",
        "stages.0.0.pwconv1.1.weight",
        "stages.0.0.act.1.gamma",
        "stages.0.0.act.1.beta",
        "stages.0.0.pwconv2.0.weight",
        "stages.0.0.pwconv2.2.running_mean",
        "stages.0.0.gamma",
        "downsample_layers.0.3.weight",
        "norm.weight",
        "head.weight",
    ):
        assert key in keys, key


# Sizes with the deploy structure and the 1000-class head. "Printed" are the paper / official README figures
# (rounded as printed: params in M, GMACs at the stated resolution); "exact" are the official model file's own
# counts (conv + linear MACs with torch's FLOP counter), which must agree to 0.5%.
PRINTED_PARAMS_M = {"a": 4.4, "f": 6.2, "p": 10.7, "n": 18.3, "t": 31, "s": 56, "b": 98, "l": 218, "xl": 386}
EXACT_PARAMS = {
    "a": 4_437_300,
    "f": 6_235_000,
    "p": 10_742_000,
    "n": 18_319_000,
    "t": 31_038_000,
    "s": 55_646_000,
    "b": 98_008_000,
    "l": 218_454_616,
    "xl": 386_529_000,
}
# variant: (resolution, printed GMACs, exact GMACs)
GMACS = {"a": (224, 0.6, 0.64), "s": (224, 9.1, 9.09), "b": (384, 47.2, 47.18), "l": (384, 105.4, 105.42)}


def _printed_tolerance(value: float) -> float:
    """One unit in the last printed digit: the README rounds some figures and truncates others (XL 386.53M)."""
    text = repr(float(value)).rstrip("0").rstrip(".")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 10**-decimals + 1e-9


@pytest.mark.parametrize("variant", list(PRINTED_PARAMS_M))
def test_parameter_count_matches_paper(variant):
    with torch.device("meta"):
        model = timm.create_model(f"unireplknet_{variant}", deploy=True)
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(EXACT_PARAMS[variant], rel=0.005)
    printed = PRINTED_PARAMS_M[variant]
    assert abs(params / 1e6 - printed) <= _printed_tolerance(printed)


@pytest.mark.parametrize("variant", list(GMACS))
def test_gmacs_match_paper(variant):
    size, printed, exact = GMACS[variant]
    with torch.device("meta"):
        model = timm.create_model(f"unireplknet_{variant}", deploy=True).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, size, size))
    gmacs = counter.get_total_flops() / 2e9
    assert gmacs == pytest.approx(exact, rel=0.005)
    assert abs(gmacs - printed) <= _printed_tolerance(printed)


# --- re-parameterisation -------------------------------------------------------------------------------------


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights at unit gain, real BN statistics and layer scales near 1, so that the output depends strongly on
    the input and on every branch; with the default init (layer scale 1e-6) each block is nearly the identity
    and a wrong re-parameterisation would pass."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen)

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(rand(c) * 0.3)
            module.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            module.bias.copy_(rand(c) * 0.1)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            module.weight.copy_(rand(*module.weight.shape) / math.sqrt(module.weight[0].numel()))
            if module.bias is not None:
                module.bias.copy_(rand(*module.bias.shape) * 0.05)
        elif isinstance(module, urlk.GRNwithNHWC):
            module.gamma.copy_(rand(*module.gamma.shape) * 0.5)
            module.beta.copy_(rand(*module.beta.shape) * 0.2)
        elif isinstance(module, urlk.UniRepLKNetBlock) and module.gamma is not None:
            module.gamma.copy_(torch.rand(module.gamma.shape, generator=gen) * 0.5 + 0.5)
        elif isinstance(module, nn.LayerNorm):
            module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
            module.bias.copy_(rand(*module.bias.shape) * 0.1)
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.fixture(scope="module")
def reparam_pairs():
    pairs = {}
    for label, kwargs in (("unireplknet_a", {}), ("big_layout", SMALL_BIG_LAYOUT)):
        model = randomize(timm.create_model("unireplknet_a", num_classes=10, **kwargs)).eval()
        pairs[label] = (model, urlk.reparameterize_model(copy.deepcopy(model)))
    return pairs


@pytest.mark.parametrize("size", [(224, 224), (150, 190), (64, 96)])
@pytest.mark.parametrize("label", ["unireplknet_a", "big_layout"])
def test_reparameterized_model_matches_training_form(reparam_pairs, label, size):
    train, deploy = reparam_pairs[label]
    assert deploy.deploy and not train.deploy
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    other = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        feats, logits = train.forward_features(x), train(x)
        feats_d, logits_d = deploy.forward_features(x), deploy(x)
        feats_other = train.forward_features(other)
    assert (
        _rel(feats, feats_other) > 0.1
    )  # the check below is meaningful only if the output follows the input
    assert _rel(feats, feats_d) < 1e-5
    assert _rel(logits, logits_d) < 1e-5


def test_reparameterization_check_is_sensitive_to_one_branch(reparam_pairs):
    """A merge that got one dilated branch's BN slightly wrong must fail the 1e-5 check by far."""
    train, deploy = reparam_pairs["big_layout"]
    broken = copy.deepcopy(train)
    with torch.no_grad():
        broken.stages[2][0].dwconv.dil_bn_k3_5.running_var.mul_(1.01)
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _rel(broken.forward_features(x), deploy.forward_features(x)) > 1e-3


@pytest.mark.parametrize("kernel_size", [7, 9, 11, 13, 15, 17])
def test_dilated_reparam_block_merges_exactly(kernel_size):
    block = randomize(urlk.DilatedReparamBlock(8, kernel_size), seed=kernel_size).eval()
    x = torch.randn(2, 8, 23, 30)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        block.reparameterize()  # idempotent
        got = block(x)
    assert set(dict(block.named_parameters())) == {"lk_origin.weight", "lk_origin.bias"}
    assert _rel(expected, got) < 1e-5


@pytest.mark.parametrize("kernel_size", [0, 3, 5, 13])
def test_block_reparameterizes_for_every_kernel_kind(kernel_size):
    block = randomize(urlk.UniRepLKNetBlock(16, kernel_size), seed=kernel_size).eval()
    x = torch.randn(2, 16, 11, 9)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        got = block(x)
    assert block.gamma is None and isinstance(block.norm, nn.Identity)
    assert _rel(expected - x, got - x) < 1e-5  # compare the residual branch, not the identity path


def test_deploy_true_builds_the_reparameterized_structure(reparam_pairs):
    _, deploy = reparam_pairs["big_layout"]
    direct = timm.create_model("unireplknet_a", num_classes=10, deploy=True, **SMALL_BIG_LAYOUT).eval()
    assert _key_lines(direct) == _key_lines(deploy)
    direct.load_state_dict(deploy.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(direct(x), deploy(x), rtol=0, atol=0)


def test_timm_reparameterize_model_and_state_dict_conversion_agree(reparam_pairs):
    from timm.utils import reparameterize_model as timm_reparameterize

    train, deploy = reparam_pairs["big_layout"]
    via_timm = timm_reparameterize(train)  # copies; calls reparameterize() on children
    assert not train.deploy
    converted = urlk.reparameterize_state_dict(train.state_dict())
    x = torch.randn(1, 3, 80, 72)
    with torch.no_grad():
        torch.testing.assert_close(via_timm(x), deploy(x), rtol=0, atol=0)
        assert _key_lines(via_timm) == _key_lines(deploy)
        from_sd = timm.create_model("unireplknet_a", num_classes=10, deploy=True, **SMALL_BIG_LAYOUT).eval()
        from_sd.load_state_dict(converted, strict=True)
        assert _rel(deploy(x), from_sd(x)) < 1e-6


def test_reparameterize_model_walks_a_wrapper_and_is_idempotent():
    wrapper = nn.Module()
    wrapper.visual = nn.Module()
    wrapper.visual.trunk = timm.create_model("unireplknet_a", num_classes=0, **SMALL_BIG_LAYOUT)
    assert urlk.reparameterize_model(wrapper) is wrapper
    keys = _key_lines(wrapper)
    urlk.reparameterize_model(wrapper)
    assert wrapper.visual.trunk.deploy and _key_lines(wrapper) == keys
    assert not any(isinstance(m, nn.BatchNorm2d) for m in wrapper.modules())


# --- timm interface ------------------------------------------------------------------------------------------


def test_timm_create_model_interface_used_by_clip_towers():
    model = timm.create_model(
        "unireplknet_a",
        pretrained=False,
        num_classes=0,
        drop_rate=0.0,
        drop_path_rate=0.1,
        **SMALL_BIG_LAYOUT,
    ).eval()
    assert model.num_features == 128 and isinstance(model.head, nn.Identity)
    assert model.default_cfg["pool_size"] == (7, 7) and model.pretrained_cfg["first_conv"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = model(x)
        feats = model.forward_features(x)
        assert pooled.shape == (2, 128) and feats.shape == (2, 128, 2, 2)
        torch.testing.assert_close(pooled, model.norm(feats.mean((2, 3))))
        torch.testing.assert_close(model.forward_head(feats, pre_logits=True), pooled)
        model.reset_classifier(5)
        assert model(x).shape == (2, 5)
        model.reset_classifier(0, global_pool="")
        assert model(x).shape == (2, 128, 2, 2)
        final, inter = model.forward_intermediates(x)
        assert [t.shape[1] for t in inter] == [16, 32, 64, 128]
        torch.testing.assert_close(final, feats)
        assert len(model.forward_intermediates(x, indices=2, intermediates_only=True)) == 2
    with pytest.raises(ValueError):
        model.reset_classifier(0, global_pool="max")


def test_features_only_returns_four_strides():
    model = timm.create_model("unireplknet_a", features_only=True, **SMALL_BIG_LAYOUT).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]


def test_group_matcher_assigns_every_parameter():
    from timm.models import group_parameters

    model = timm.create_model("unireplknet_a", **SMALL_BIG_LAYOUT)
    for coarse in (True, False):
        groups = group_parameters(model, model.group_matcher(coarse=coarse))
        assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
        assert len(groups) > 4


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = randomize(timm.create_model("unireplknet_a", num_classes=4, **SMALL_BIG_LAYOUT))
    x = torch.randn(2, 3, 48, 48)
    model(x).sum().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    assert all(b.grad_checkpointing for s in model.stages for b in s)
    model(x).sum().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], msg=name)


def test_drop_path_rates_rise_linearly_to_the_given_rate():
    with torch.device("meta"):
        model = timm.create_model("unireplknet_a", drop_path_rate=0.3)
    rates = [
        b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else 0.0 for s in model.stages for b in s
    ]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)


def test_layouts_without_default_kernels_are_refused():
    with pytest.raises(ValueError, match="kernel_sizes"):
        urlk.UniRepLKNet(depths=(1, 2, 3, 4), dims=(8, 16, 32, 64))
    with pytest.raises(TypeError, match="unexpected"):
        timm.create_model("unireplknet_a", not_an_option=1)


def test_block_reparameterizes_after_its_dilated_block_was_merged_alone():
    block = randomize(urlk.UniRepLKNetBlock(16, 13), seed=3).eval()
    x = torch.randn(1, 16, 15, 17)
    with torch.no_grad():
        expected = block(x) - x
        block.dwconv.reparameterize()  # as a walk over modules may do before reaching the block
        block.reparameterize()
        assert _rel(expected, block(x) - x) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reparameterize_in_half_precision_folds_in_float32(dtype):
    model = randomize(timm.create_model("unireplknet_a", num_classes=0, **SMALL_BIG_LAYOUT)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = urlk.reparameterize_model(copy.deepcopy(model))(x)
        half = urlk.reparameterize_model(model.to(dtype))
        assert all(p.dtype == dtype for p in half.parameters())
        assert _rel(expected, half(x.to(dtype)).float()) < 0.05
