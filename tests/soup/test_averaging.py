"""Uniform and weighted averages and WiSE-FT mixes of state dicts: exactness where it is promised."""

import pytest
import torch

from clipctl.errors import ClipctlError
from clipctl.soup.averaging import WeightedSum, interpolate, parse_weights, weighted_average


def _state_dict(seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(7, 5, generator=g).to(dtype),
        "b": torch.randn(5, generator=g).to(dtype),
        "bn.num_batches_tracked": torch.tensor(100 + seed),
        "mask": torch.rand(4, generator=g) > 0.5,
    }


def _equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_soup_of_one_is_the_input_bit_for_bit(dtype):
    sd = _state_dict(0, dtype)
    assert _equal(weighted_average([sd]), sd)
    assert _equal(weighted_average([sd], [1.0]), sd)


def test_uniform_soup_of_two_is_the_elementwise_mean():
    a, b = _state_dict(0), _state_dict(1)
    soup = weighted_average([a, b])
    assert torch.equal(soup["w"], (a["w"] + b["w"]) / 2)
    assert torch.equal(soup["b"], (a["b"] + b["b"]) / 2)
    # counters and masks are not averaged: they come from the first checkpoint
    assert torch.equal(soup["bn.num_batches_tracked"], a["bn.num_batches_tracked"])
    assert torch.equal(soup["mask"], a["mask"])


def test_weighted_soup_weights_each_checkpoint():
    sds = [_state_dict(i) for i in range(3)]
    soup = weighted_average(sds, [0.5, 0.25, 0.25])
    expected = 0.5 * sds[0]["w"] + 0.25 * sds[1]["w"] + 0.25 * sds[2]["w"]
    torch.testing.assert_close(soup["w"], expected, rtol=0, atol=1e-6)
    assert not torch.allclose(soup["w"], weighted_average(sds)["w"])


def test_half_precision_checkpoints_are_summed_in_float32():
    # 3 * x needs more mantissa bits than float16 has; summing in float16 would round before dividing.
    x = {"w": torch.tensor([0.1, 0.3, 1 / 3, 2047.0], dtype=torch.float16)}
    assert torch.equal(weighted_average([x, x, x])["w"], x["w"])


def test_wise_ft_alpha_0_and_1_reproduce_the_inputs_exactly():
    zeroshot, finetuned = _state_dict(0), _state_dict(1)
    zeroshot["w"][0, 0] = float("inf")  # a weight of 0 must not touch it (0 * inf is NaN)
    assert _equal(interpolate(zeroshot, finetuned, 0.0), zeroshot)
    assert _equal(interpolate(zeroshot, finetuned, 1.0), finetuned)
    half = interpolate(_state_dict(0), finetuned, 0.5)
    torch.testing.assert_close(half["w"], (_state_dict(0)["w"] + finetuned["w"]) / 2)


def test_running_sum_copy_leaves_the_original_untouched():
    total = WeightedSum()
    total.add(_state_dict(0))
    before = total.result(1.0)
    branch = total.copy()
    branch.add(_state_dict(1))
    assert _equal(total.result(1.0), before)
    assert not torch.equal(branch.result(2.0)["w"], before["w"])


@pytest.mark.parametrize(
    ("text", "count", "message"),
    [
        ("0.5,0.4", 2, "sum to 0.9, not 1"),
        ("0.5,0.5", 3, "2 number(s) for 3 checkpoint(s)"),
        ("1.5,-0.5", 2, ">= 0"),
        ("a,b", 2, "comma-separated numbers"),
        ("nan,1", 2, "finite"),
    ],
)
def test_bad_weights_are_refused(text, count, message):
    with pytest.raises(ClipctlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_weights(text, count)


def test_weights_that_sum_to_one_parse():
    assert parse_weights("0.2, 0.3,0.5", 3) == [0.2, 0.3, 0.5]
