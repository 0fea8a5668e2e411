"""`clipctl eval linear-probe` and `clipctl eval report` wiring: tables, cache notes, written files, and one line
plus a non-zero exit for bad input."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from clipctl.cli.main import main
from tests.eval.eval_data import make_image_folder, tiny_model_files


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probecli")
    config, weights = tiny_model_files(root / "model")
    train = make_image_folder(root / "train", {"cat": 5, "dog": 5, "eel": 5, "fox": 5, "gnu": 5})
    test = make_image_folder(root / "test", {"cat": 2, "dog": 2, "eel": 2, "fox": 2, "gnu": 2}, seed=1)
    (root / "classnames.txt").write_text("cat\ndog\neel\nfox\ngnu\n")
    (root / "empty").mkdir()
    return root, config, weights, train, test


def _probe_args(setup, *extra):
    root, config, weights, train, test = setup
    base = ["eval", "linear-probe", "--model", config, "--pretrained", weights, "--train", str(train)]
    return [*base, "--test", str(test), "--cache-dir", str(root / "cache"), "-j", "0", "-q", *extra]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("clipctl: error: ")
    return lines[0]


def test_probe_prints_its_table_and_says_where_features_came_from(setup, tmp_path, capsys):
    out = tmp_path / "lp.json"
    assert main(_probe_args(setup, "--wd", "1e-3", "--out", str(out))) == 0
    captured = capsys.readouterr()
    assert "linear probe:" in captured.out and "top-1" in captured.out
    assert json.loads(out.read_text())["task"] == "linear_probe"
    assert main(_probe_args(setup, "--wd", "1e-3")) == 0
    assert "features (train): 25 from the cache, 0 encoded" in capsys.readouterr().err


def test_report_from_three_files_of_two_kinds_and_a_png(setup, tmp_path, capsys):
    root, config, weights, train, test = setup
    zeroshot = tmp_path / "zs.json"
    args = ["zeroshot", "--model", config, "--pretrained", weights, "--data", str(test)]
    assert (
        main([*args, "--classnames", str(root / "classnames.txt"), "-j", "0", "-q", "--out", str(zeroshot)])
        == 0
    )
    assert main(_probe_args(setup, "--wd", "1e-3", "--out", str(tmp_path / "lp.json"))) == 0
    other = tmp_path / "other.pt"
    import torch

    import clipctl

    torch.manual_seed(5)
    torch.save(clipctl.create_model(config).state_dict(), other)
    probe_cb = _probe_args(
        setup, "--wd", "1e-3", "--format", "clip_benchmark", "--out", str(tmp_path / "cb.json")
    )
    probe_cb[probe_cb.index("--pretrained") + 1] = str(other)
    assert main(probe_cb) == 0
    capsys.readouterr()
    files = [str(tmp_path / name) for name in ("zs.json", "lp.json", "cb.json")]
    table, plot = tmp_path / "table.md", tmp_path / "fig.png"
    assert main(["eval", "report", *files, "--out", str(table), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "average" in printed and "top-1 accuracy" in printed
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| model | pretrained | test (zero-shot) | test (linear probe) | average |")
    assert len([line for line in lines if line.startswith(f"| {config} |")]) == 2  # two weights, two rows
    with Image.open(plot) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize(
    ("extra", "replace", "message"),
    [
        ((), {"--train": "{r}/missing"}, "--train {r}/missing: no such file or folder"),
        ((), {"--train": "{r}/empty"}, "has no class sub-folders"),
        (("--format", "csv"), {}, "unknown --format 'csv'"),
        (("--few-shot", "0"), {}, "--few-shot must be at least 1"),
        (("--val-fraction", "1.5"), {}, "--val-fraction must be between 0 and 1"),
        (("--wd", "-1"), {}, "--wd must be 0 or more"),
        (("--few-shot", "6"), {}, "class 'cat' has only 5 training image(s)"),
        (("--out", "{r}"), {}, "is a folder"),
    ],
)
def test_probe_bad_input_is_one_line(setup, capsys, extra, replace, message):
    root = str(setup[0])
    args = _probe_args(setup, *(e.format(r=root) for e in extra))
    for flag, value in replace.items():
        args[args.index(flag) + 1] = value.format(r=root)
    assert main(args) != 0
    assert message.format(r=root) in _one_error_line(capsys.readouterr().err)


def test_probe_csv_without_its_label_column_is_one_line(setup, tmp_path, capsys):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(f"filepath,class\n{setup[3]}/cat/0.png,cat\n")
    args = _probe_args(setup)
    args[args.index("--train") + 1] = str(csv_path)
    assert main(args) != 0
    assert "has no label column 'label'" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{t}/missing.json", "--out", "{t}/t.md"], "no such results file"),
        (["{t}/ok.json", "--out", "{t}/t.txt"], "unknown table format '.txt'"),
        (["{t}/ok.json", "--out", "{t}/t.md", "--plot", "{t}/fig.jpg"], "the plot is a PNG"),
        (["{t}/ok.json", "--out", "{t}/t.md", "--metric", "acc"], "unknown --metric 'acc'"),
    ],
)
def test_report_bad_input_is_one_line(tmp_path, capsys, args, message):
    doc = {"model": "m", "pretrained": "p", "dataset": "d", "task": "linear_probe", "metrics": {"top1": 0.5}}
    (tmp_path / "ok.json").write_text(json.dumps(doc))
    assert main(["eval", "report", *(a.format(t=tmp_path) for a in args)]) != 0
    assert message in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "t.md").exists()
