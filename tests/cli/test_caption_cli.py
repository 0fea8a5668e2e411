"""`clipctl caption`: a tiny random CoCa through the CLI with a checkpoint path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import clipctl
from clipctl.cli.app import build_app
from clipctl.cli.main import main
from tests.helpers import write_model_config

TINY_COCA_CFG = {
    "embed_dim": 32,
    "custom_text": True,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "layers": 1,
        "width": 32,
        "head_width": 16,
        "attentional_pool": True,
        "attn_pooler_heads": 2,
        "attn_pooler_queries": 5,
        "output_tokens": True,
    },
    # CLIP's real vocabulary, so the BPE tokenizer decodes what the model generates
    "text_cfg": {
        "context_length": 20,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
        "embed_cls": True,
        "output_tokens": True,
    },
    "multimodal_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def coca(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coca")
    config = str(write_model_config(folder, "tiny-coca", TINY_COCA_CFG))
    torch.manual_seed(0)
    model = clipctl.create_model(config)
    weights = folder / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, weights)
    return config, weights


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(40, 30), (64, 64)]):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def expected_captions(config, weights, paths, **generate_kwargs) -> list[str]:
    """The captions computed without the CLI: generate, then OpenCLIP README's decode recipe."""
    model, _, preprocess = clipctl.create_model_and_transforms(config, pretrained=str(weights))
    tokenizer = clipctl.get_tokenizer(config)
    images = torch.stack([preprocess(Image.open(p)) for p in paths])
    ids = model.eval().generate(images, **generate_kwargs)
    texts = [tokenizer.decode(row) for row in ids.tolist()]
    return [" ".join(t.split("<end_of_text>")[0].replace("<start_of_text>", "").split()) for t in texts]


def parse_lines(output: str) -> dict[str, str]:
    rows = [line.split("\t", 1) for line in output.splitlines() if "\t" in line]
    return {path: caption for path, caption in rows}


@pytest.mark.parametrize(
    ("generation_type", "extra_args", "generate_kwargs"),
    [
        (
            "beam_search",
            ["--num-beams", "4", "--num-beam-groups", "2"],
            {"num_beams": 4, "num_beam_groups": 2},
        ),
        ("top_k", ["--top-k", "1"], {"top_k": 1}),  # k=1 is greedy, so it is deterministic
    ],
)
def test_captions_match_generate_and_decode(coca, images, generation_type, extra_args, generate_kwargs):
    config, weights = coca
    argv = ["caption", *map(str, images), "--model", config, "--pretrained", str(weights)]
    argv += ["--generation-type", generation_type, "--max-len", "8", *extra_args]
    result = CliRunner().invoke(build_app(), argv)
    assert result.exit_code == 0, result.output
    got = parse_lines(result.stdout)
    want = expected_captions(
        config, weights, images, generation_type=generation_type, seq_len=8, min_seq_len=5, **generate_kwargs
    )
    assert list(got) == [str(p) for p in images]
    assert list(got.values()) == want
    assert all(want)  # a random model still says something


def test_top_p_with_a_seed_is_repeatable_and_json(coca, images):
    config, weights = coca
    argv = ["caption", *map(str, images), "--model", config, "--pretrained", str(weights)]
    argv += ["--generation-type", "top_p", "--top-p", "0.9", "--max-len", "7", "--seed", "3", "--json"]
    first = CliRunner().invoke(build_app(), argv)
    second = CliRunner().invoke(build_app(), argv)
    assert first.exit_code == 0, first.output
    rows = json.loads(first.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert all(isinstance(r["caption"], str) for r in rows)
    assert json.loads(second.stdout) == rows


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_non_coca_model_is_a_clear_error(images, capsys):
    code, _, err = run(capsys, "caption", str(images[0]), "--model", "tiny-ViT-8-64")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not a CoCa model" in lines[0]


def test_unreadable_image_is_skipped_and_reported(coca, images, tmp_path, capsys):
    config, weights = coca
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    code, out, err = run(
        capsys,
        "caption",
        str(bad),
        str(images[0]),
        "--model",
        config,
        "--pretrained",
        str(weights),
        "--max-len",
        "8",
        "--generation-type",
        "top_k",
    )
    assert code == 1
    assert str(images[0]) in parse_lines(out)
    assert f"skipped {bad}" in err and "1 of 2 image(s) could not be read" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generation-type", "nucleus"], "--generation-type"),
        (["--max-len", "50"], "longer than the model's text context"),
        (["--num-beams", "5", "--num-beam-groups", "2"], "--num-beams"),
    ],
)
def test_bad_options_are_one_line_exit_2(coca, images, args, message, capsys):
    config, weights = coca
    code, _, err = run(
        capsys, "caption", str(images[0]), "--model", config, "--pretrained", str(weights), *args
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0]


def test_weights_are_required(coca, images, capsys):
    config, _ = coca
    code, _, err = run(capsys, "caption", str(images[0]), "--model", config)
    assert code == 2 and "needs pretrained weights" in err


def test_missing_image_is_exit_2(coca, tmp_path, capsys):
    config, weights = coca
    code, _, err = run(
        capsys, "caption", str(tmp_path / "nope.jpg"), "--model", config, "--pretrained", str(weights)
    )
    assert code == 2 and "does not exist" in err
