"""`clipctl zeroshot` wiring: the table, the results file in both formats, and one-line errors."""

from __future__ import annotations

import json

import pytest

from clipctl.cli.main import main
from tests.eval.eval_data import make_clip_benchmark_classification, make_image_folder, tiny_model_files
from tests.helpers import assert_user_error


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config, weights = tiny_model_files(tmp_path_factory.mktemp("model"))
    return ["--model", config, "--pretrained", weights, "--workers", "0", "--quiet"]


@pytest.fixture
def data(tmp_path):
    root = make_image_folder(tmp_path / "pets", {"cat": 2, "dog": 2, "fish": 1})
    (root / "dog" / "bad.jpg").write_text("nope")
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nfish\n")
    return ["--data", str(root), "--classnames", str(names)]


def test_table_and_results_file(tiny, data, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["zeroshot", *tiny, *data, "--templates", "simple", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "top-1" in captured.out and "pets" in captured.out and "n/a" in captured.out  # 3 classes: no top-5
    assert "skipped 1 unreadable image" in captured.err and "results written to" in captured.err
    written = json.loads(out.read_text())
    assert written["dataset"] == "pets" and written["num_samples"] == 5
    assert f"{100 * written['metrics']['top1']:.2f}%" in captured.out


def test_clip_benchmark_format(tiny, tmp_path, capsys):
    root = make_clip_benchmark_classification(
        tmp_path / "wds_toy", ["a", "b"], [[0, 1, 1]], templates=["{c}"]
    )
    out = tmp_path / "cb.json"
    assert (
        main(["zeroshot", *tiny, "--data", str(root), "--out", str(out), "--format", "clip_benchmark"]) == 0
    )
    written = json.loads(out.read_text())
    assert written["dataset"] == "wds/toy" and set(written["metrics"]) == {
        "acc1",
        "acc5",
        "mean_per_class_recall",
    }
    assert written["metrics"]["acc5"] is None and "NaN" not in out.read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--classnames-mismatch"], "has 2 names but --data"),
        (["--templates", "fancy"], "neither 'openai', 'simple' nor an existing file"),
        (["--precision", "fp8"], "unknown --precision"),
        (["--format", "csv"], "unknown --format"),
    ],
)
def test_bad_input_is_one_line(tiny, data, tmp_path, capsys, extra, message):
    args = ["zeroshot", *tiny, *data, *extra]
    if extra == ["--classnames-mismatch"]:
        names = tmp_path / "two.txt"
        names.write_text("cat\ndog\n")
        args = ["zeroshot", *tiny, *data[:3], str(names)]
    assert main(args) == 2
    assert message in assert_user_error(capsys.readouterr().err)


def test_unknown_model_and_missing_data(data, tmp_path, capsys):
    assert main(["zeroshot", "--model", "ViT-B-33", "--pretrained", "none", *data, "--quiet"]) == 2
    assert "unknown model 'ViT-B-33'" in assert_user_error(capsys.readouterr().err)
    assert (
        main(["zeroshot", "--model", "ViT-B-32", "--pretrained", "none", "--data", str(tmp_path / "nope")])
        == 2
    )
    assert "no such folder" in assert_user_error(capsys.readouterr().err)


def test_output_of_another_model_is_kept(tiny, data, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"model": "RN50", "pretrained": "openai", "metrics": {}}))
    assert main(["zeroshot", *tiny, *data, "--out", str(out)]) == 2
    assert "holds results for model 'RN50'" in assert_user_error(capsys.readouterr().err)
    assert json.loads(out.read_text())["model"] == "RN50"
