"""`clipctl eval retrieval` wiring: the table, both result formats, and one-line errors."""

from __future__ import annotations

import json

import pytest

from clipctl.cli.main import main
from tests.eval.eval_data import make_clip_benchmark_retrieval, make_image_folder, tiny_model_files
from tests.helpers import assert_user_error


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config, weights = tiny_model_files(tmp_path_factory.mktemp("model"))
    return ["--model", config, "--pretrained", weights, "--workers", "0", "--quiet"]


@pytest.fixture
def tsv(tmp_path):
    make_image_folder(tmp_path / "imgs", {"x": 3})
    path = tmp_path / "imgs" / "pairs.tsv"
    path.write_text("image\tcaption\nx/0.png\tzero\nx/1.png\tone\nx/2.png\ttwo\nx/0.png\tnil\n")
    return path


def test_tsv_table_and_results(tiny, tsv, tmp_path, capsys):
    out = tmp_path / "r.json"
    args = [
        "eval",
        "retrieval",
        *tiny,
        "--data",
        str(tsv),
        "--csv-img-key",
        "image",
        "--csv-caption-key",
        "caption",
    ]
    assert main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "image -> text" in captured.out and "text -> image" in captured.out
    assert "3 images, 4 texts" in captured.out
    written = json.loads(out.read_text())
    assert written["metrics"]["image_to_text_R@10"] == 1.0  # 4 captions: every image is found within 10
    assert main([*args, "--out", str(tmp_path / "cb.json"), "--format", "clip_benchmark"]) == 0
    cb = json.loads((tmp_path / "cb.json").read_text())
    assert cb["task"] == "zeroshot_retrieval" and "image_retrieval_recall@5" in cb["metrics"]


def test_csv_separator_escape(tiny, tsv, capsys):
    args = [
        "eval",
        "retrieval",
        *tiny,
        "--data",
        str(tsv),
        "--csv-img-key",
        "image",
        "--csv-caption-key",
        "caption",
    ]
    assert main([*args, "--csv-separator", "\\t"]) == 0


def test_clip_benchmark_folder(tiny, tmp_path, capsys):
    root = make_clip_benchmark_retrieval(tmp_path / "wds_mini", [["a", "b"], ["c"]])
    assert main(["eval", "retrieval", *tiny, "--data", str(root)]) == 0
    assert "wds/mini" in capsys.readouterr().out


def test_bad_input_is_one_line(tiny, tsv, tmp_path, capsys):
    assert main(["eval", "retrieval", *tiny, "--data", str(tsv)]) == 2
    assert "--csv-img-key image" in assert_user_error(capsys.readouterr().err)
    assert main(["eval", "retrieval", *tiny, "--data", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in assert_user_error(capsys.readouterr().err)
    assert (
        main(
            [
                "eval",
                "retrieval",
                "--model",
                "ViT-B-33",
                "--pretrained",
                "none",
                "--data",
                str(tsv),
                "--csv-img-key",
                "image",
                "--csv-caption-key",
                "caption",
            ]
        )
        == 2
    )
    assert "unknown model" in assert_user_error(capsys.readouterr().err)
