"""`run_soup` end to end: files in, a weights file or a Hub-layout folder out; the greedy recipe on generated
held-out data, scored the way `clipctl zeroshot` scores."""

import json

import pytest
import torch
from safetensors.torch import load_file

import clipctl
from clipctl.errors import CheckpointError, ClipctlError
from clipctl.soup.heldout import HeldOutOptions
from clipctl.soup.soup_job import SoupOptions, run_soup
from tests.soup.soup_data import heldout_set, random_checkpoint, tiny_config


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("soup")
    config = tiny_config(folder)
    sds = [random_checkpoint(config, folder / f"m{i}.pt", seed=i) for i in range(3)]
    return folder, config, sds


def _equal(a, b):
    return sorted(a) == sorted(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_soup_of_one_checkpoint_is_it_bit_for_bit(ckpts, tmp_path):
    folder, _, sds = ckpts
    for out in (tmp_path / "one.pt", tmp_path / "one.safetensors"):
        run_soup(SoupOptions([str(folder / "m0.pt")], out))
        written = load_file(str(out)) if out.suffix == ".safetensors" else torch.load(out, weights_only=True)
        assert _equal(written, sds[0])


def test_uniform_soup_of_two_is_the_elementwise_mean(ckpts, tmp_path):
    folder, _, sds = ckpts
    summary = run_soup(
        SoupOptions([str(folder / "m0.pt"), str(folder / "m1.pt")], tmp_path / "u.safetensors")
    )
    written = load_file(str(tmp_path / "u.safetensors"))
    assert summary.method == "uniform" and summary.weights == [0.5, 0.5]
    for key, tensor in written.items():
        assert torch.equal(tensor, (sds[0][key] + sds[1][key]) / 2), key


def test_weighted_soup_into_a_hub_folder_that_loads_again(ckpts, tmp_path):
    folder, config, sds = ckpts
    out = tmp_path / "souped"
    specs = [str(folder / f"m{i}.pt") for i in range(3)]
    run_soup(SoupOptions(specs, out, model=config, weights="0.5,0.25,0.25"))
    model = clipctl.create_model(f"local-dir:{out}")
    expected = {k: 0.5 * sds[0][k] + 0.25 * sds[1][k] + 0.25 * sds[2][k] for k in sds[0]}
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=1e-6)
    card = (out / "README.md").read_text()
    assert "weighted soup" in card and "m0.pt` x 0.5" in card
    # a Hub folder is an ingredient like any other
    run_soup(SoupOptions([f"local-dir:{out}"], tmp_path / "again.pt"))
    assert _equal(torch.load(tmp_path / "again.pt", weights_only=True), model.state_dict())


def test_another_architecture_is_refused_and_nothing_is_replaced(ckpts, tmp_path):
    folder, _, sds = ckpts
    wide = tiny_config(tmp_path, width=48)
    random_checkpoint(wide, tmp_path / "wide.pt", seed=0)
    out = tmp_path / "soup.pt"
    out.write_bytes(b"old")
    with pytest.raises(
        CheckpointError, match=r"wide.pt does not have the architecture of .*m0.pt: first differing key"
    ):
        run_soup(SoupOptions([str(folder / "m0.pt"), str(tmp_path / "wide.pt")], out, overwrite=True))
    assert out.read_bytes() == b"old"


def test_bad_options_fail_before_reading_weights(ckpts, tmp_path):
    folder, config, _ = ckpts
    one = [str(folder / "m0.pt")]
    with pytest.raises(ClipctlError, match="exists; pass --overwrite"):
        (tmp_path / "x.pt").write_bytes(b"")
        run_soup(SoupOptions(one, tmp_path / "x.pt"))
    with pytest.raises(ClipctlError, match="unknown weights format '.ckpt'"):
        run_soup(SoupOptions(one, tmp_path / "x.ckpt"))
    with pytest.raises(ClipctlError, match="needs the architecture: --model is missing"):
        run_soup(SoupOptions(one, tmp_path / "folder"))
    with pytest.raises(ClipctlError, match="--greedy needs --data"):
        run_soup(SoupOptions(one, tmp_path / "g.pt", greedy=True))
    with pytest.raises(ClipctlError, match="leave out --weights"):
        run_soup(SoupOptions(one, tmp_path / "g.pt", greedy=True, weights="1"))
    with pytest.raises(ClipctlError, match="does not exist"):
        run_soup(SoupOptions([*one, str(tmp_path / "missing.pt")], tmp_path / "g.pt"))


def test_greedy_soup_scores_at_least_its_best_checkpoint(ckpts, tmp_path):
    from clipctl.eval.zeroshot_job import ZeroShotOptions, run_zeroshot

    folder, config, sds = ckpts
    data, classnames = heldout_set(tmp_path / "synth")
    # two near copies of m0 and two unrelated models: averaging those with m0 is worth testing
    near = {k: v + 1e-3 * torch.randn_like(v) if v.is_floating_point() else v for k, v in sds[0].items()}
    torch.save(near, tmp_path / "near.pt")
    specs = [str(folder / "m0.pt"), str(folder / "m1.pt"), str(tmp_path / "near.pt"), str(folder / "m2.pt")]
    held_out = HeldOutOptions(data=data, classnames=classnames, templates="simple", workers=0)
    results = tmp_path / "greedy.json"
    summary = run_soup(
        SoupOptions(specs, tmp_path / "g.pt", model=config, greedy=True, held_out=held_out, results=results)
    )
    greedy = summary.greedy
    assert greedy.top1 >= max(step.top1 for step in greedy.steps)
    assert greedy.kept[0] == greedy.steps[0].checkpoint

    # the reported accuracy is what `clipctl zeroshot` measures on the written soup
    def zeroshot_top1(weights):
        options = ZeroShotOptions(
            config, weights, data=data, classnames=classnames, templates="simple", workers=0
        )
        return run_zeroshot(options)["metrics"]["top1"]

    assert zeroshot_top1(str(tmp_path / "g.pt")) == pytest.approx(greedy.top1)
    # and each checkpoint alone scores what `clipctl zeroshot` gives it
    assert zeroshot_top1(specs[1]) == pytest.approx(
        next(s.top1 for s in greedy.steps if s.checkpoint == specs[1])
    )
    written = json.loads(results.read_text())
    assert [d["pretrained"] for d in written["results"]] == [*specs, "greedy soup"]
    assert written["kept"] == greedy.kept
