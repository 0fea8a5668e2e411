"""`clipctl embed` wiring: exit codes, the summary line and one-line errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clipctl.cli.main import main
from tests.helpers import TINY_VIT_CFG, assert_user_error, write_model_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import clipctl

    folder = tmp_path_factory.mktemp("tiny")
    config = str(write_model_config(folder, "tiny-embed-cli"))
    weights = folder / "weights.pt"
    torch.save(clipctl.create_model(config).state_dict(), weights)
    return ["--model", config, "--pretrained", str(weights), "--workers", "0", "--quiet"]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(root / f"{i}.jpg")
    (root / "bad.png").write_text("not a png")
    return root


def test_embed_folder_prints_a_summary_and_resumes(folder, tmp_path, tiny, capsys):
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(folder), "--out", str(out), *tiny]) == 0
    text = capsys.readouterr().out
    assert "embedded 3 images" in text and "1 unreadable" in text and "holds 3 rows" in text
    assert len(pd.read_parquet(out)) == 3

    assert main(["embed", str(folder), "--out", str(out), *tiny]) == 0
    assert "skipped 3 already in the output" in capsys.readouterr().out


def test_embed_text_and_no_normalize(tmp_path, tiny, capsys):
    captions = tmp_path / "caps.txt"
    captions.write_text("one\ntwo\n")
    out = tmp_path / "text.parquet"
    assert main(["embed", "--text", str(captions), "--out", str(out), "--no-normalize", *tiny]) == 0
    assert "embedded 2 captions" in capsys.readouterr().out
    vectors = np.stack(pd.read_parquet(out).embedding)
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["embed", "{empty}", "--out", "{out}"], 2, "no images found in"),
        (["embed", "{missing}", "--out", "{out}"], 2, "no such file or folder"),
        (["embed", "--out", "{out}"], 2, "either SRC (images) or --text FILE"),
        (["embed", "{folder}", "--out", "{out}", "--precision", "fp8"], 2, "unknown --precision 'fp8'"),
        (["embed", "{folder}", "--out", "{out}", "--precision", "fp16"], 2, "use --precision bf16"),
        (["embed", "{folder}", "--out", "{out}", "--format", "npy"], 2, "unknown format 'npy'"),
        (["embed", "{folder}", "--out", "{out}", "--device", "cuda:0"], 2, "CUDA is not available"),
        (["embed", "{folder}", "--out", "{out}", "--batch-size", "0"], 2, "--batch-size must be at least 1"),
        (["embed", "{allbad}", "--out", "{out}"], 1, "none of the 1 images could be read"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(folder, tmp_path, tiny, capsys, args, code, message):
    if torch.cuda.is_available() and "cuda:0" in args:
        pytest.skip("this machine has CUDA")
    (tmp_path / "empty").mkdir()
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "x.jpg").write_text("not a jpeg")
    paths = {
        "empty": tmp_path / "empty",
        "missing": tmp_path / "missing",
        "folder": folder,
        "allbad": tmp_path / "allbad",
        "out": tmp_path / "emb.parquet",
    }
    argv = [a.format(**paths) for a in args] + tiny
    assert main(argv) == code
    assert message in assert_user_error(capsys.readouterr().err)


def test_output_for_another_model_is_refused(folder, tmp_path, tiny, capsys):
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(folder), "--out", str(out), *tiny]) == 0
    capsys.readouterr()
    other = str(write_model_config(tmp_path, "other-model"))  # same shapes, so the weights load; another name
    args = ["embed", str(folder), "--out", str(out), *tiny[2:], "--model", other]
    assert main(args) == 2
    assert "pass another --out" in assert_user_error(capsys.readouterr().err)


def test_local_dir_without_weights_needs_pretrained_none(folder, tmp_path, capsys):
    """Inference on a config-only folder is refused (random features are rarely wanted) unless asked for."""
    arch = tmp_path / "arch"
    arch.mkdir()
    (arch / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_VIT_CFG}))
    args = ["embed", str(folder), "--model", f"local-dir:{arch}", "--workers", "0", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.parquet")]) == 2
    assert "pass --pretrained none" in assert_user_error(capsys.readouterr().err)
    assert main([*args, "--out", str(tmp_path / "b.parquet"), "--pretrained", "none"]) == 0
    assert len(pd.read_parquet(tmp_path / "b.parquet")) == 3


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_weights_that_need_code_are_one_line_saying_how_to_allow_them(folder, tmp_path, tiny, capsys):
    import clipctl

    evil = tmp_path / "evil.pt"
    state = clipctl.create_model(tiny[1]).state_dict()
    torch.save({"state_dict": state, "hook": _RunsCommand(tmp_path / "ran")}, evil)
    args = ["embed", str(folder), "--out", str(tmp_path / "e.parquet"), *tiny[:2], "--pretrained", str(evil)]
    assert main([*args, "--workers", "0", "--quiet"]) == 2
    line = assert_user_error(capsys.readouterr().err, f"needs code to load ({os.system.__module__}.system)")
    assert "--unsafe-load" in line and not (tmp_path / "ran").exists()


@pytest.mark.parametrize("native", [False, True])
def test_bf16_warns_once_on_a_cpu_that_emulates_it(native, folder, tmp_path, tiny, capsys, monkeypatch):
    from clipctl.runtime import cpu

    flags = "avx512f avx512_bf16" if native else "avx512f"
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: ("Test CPU", set(flags.split())))
    out = tmp_path / "e.parquet"
    assert main(["embed", str(folder), "--out", str(out), *tiny, "--precision", "bf16"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    if native:
        assert warnings == []
    else:
        assert (
            len(warnings) == 1 and "Test CPU" in warnings[0] and "--precision fp32 is faster" in warnings[0]
        )
