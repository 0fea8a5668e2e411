"""`run_wise_ft`: exact endpoints, and a sweep that writes one result per alpha and keeps the best mix."""

import json

import pytest
import torch

from clipctl.errors import ClipctlError
from clipctl.soup.averaging import interpolate
from clipctl.soup.heldout import HeldOutOptions
from clipctl.soup.wise_ft_job import WiseFtOptions, parse_alphas, run_wise_ft
from tests.soup.soup_data import heldout_set, random_checkpoint, tiny_config


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wiseft")
    config = tiny_config(folder)
    zeroshot = random_checkpoint(config, folder / "zs.pt", seed=0)
    finetuned = random_checkpoint(config, folder / "ft.safetensors", seed=1)
    return folder, config, zeroshot, finetuned


def _load(path):
    return torch.load(path, weights_only=True)


def _equal(a, b):
    return sorted(a) == sorted(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_alpha_0_and_1_reproduce_the_inputs_exactly(pair, tmp_path):
    folder, _, zeroshot, finetuned = pair
    for alpha, expected in (("0", zeroshot), ("1", finetuned)):
        out = tmp_path / f"a{alpha}.pt"
        run_wise_ft(WiseFtOptions(str(folder / "zs.pt"), str(folder / "ft.safetensors"), out, alphas=alpha))
        assert _equal(_load(out), expected)


def test_one_alpha_is_the_interpolation(pair, tmp_path):
    folder, _, zeroshot, finetuned = pair
    out = tmp_path / "mix.pt"
    summary = run_wise_ft(
        WiseFtOptions(str(folder / "zs.pt"), str(folder / "ft.safetensors"), out, alphas="0.3")
    )
    assert summary.alpha == 0.3 and summary.results == {}
    for key, tensor in _load(out).items():
        torch.testing.assert_close(tensor, 0.7 * zeroshot[key] + 0.3 * finetuned[key], rtol=0, atol=1e-6)


def test_sweep_writes_one_result_per_alpha_and_keeps_the_best(pair, tmp_path):
    folder, config, zeroshot, finetuned = pair
    data, classnames = heldout_set(tmp_path / "synth")
    held_out = HeldOutOptions(data=data, classnames=classnames, templates="simple", workers=0)
    out = tmp_path / "best.pt"
    options = WiseFtOptions(
        str(folder / "zs.pt"), str(folder / "ft.safetensors"), out, "0,0.5,1", model=config, held_out=held_out
    )
    summary = run_wise_ft(options)
    assert list(summary.results) == [0.0, 0.5, 1.0]
    for alpha, path in summary.results.items():
        assert path.name == f"best.alpha{alpha:g}.json"
        doc = json.loads(path.read_text())
        assert doc["wise_ft"]["alpha"] == alpha and doc["pretrained"] == f"wise-ft alpha={alpha:g}"
        assert doc["metrics"]["top1"] == summary.top1[alpha]
    best = max(summary.top1.values())
    assert summary.top1[summary.alpha] == best
    assert summary.alpha == next(a for a, t in summary.top1.items() if t == best)  # first listed on a tie
    assert _equal(_load(out), interpolate(zeroshot, finetuned, summary.alpha))
    # the same files again are refused unless --overwrite
    with pytest.raises(ClipctlError, match="exists; pass --overwrite"):
        run_wise_ft(options)


def test_bad_alphas_and_a_sweep_without_data_are_refused(pair, tmp_path):
    folder, _, _, _ = pair
    with pytest.raises(ClipctlError, match="--alpha 1.5 is out of range"):
        parse_alphas("0,1.5")
    with pytest.raises(ClipctlError, match="give numbers between 0 and 1"):
        parse_alphas("half")
    assert parse_alphas("0, 0.5,0.5,1") == [0.0, 0.5, 1.0]
    options = WiseFtOptions(str(folder / "zs.pt"), str(folder / "ft.safetensors"), tmp_path / "x.pt", "0,1")
    with pytest.raises(ClipctlError, match="need --data VAL"):
        run_wise_ft(options)
    assert not (tmp_path / "x.pt").exists()
