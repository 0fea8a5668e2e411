"""`eval report`: result files of every kind and shape merged into one model x dataset table."""

import csv
import json

import pytest
from PIL import Image

from clipctl.errors import ClipctlError
from clipctl.eval.report import build_table
from clipctl.eval.report_plot import plot_table
from clipctl.eval.report_render import render_csv, render_html, render_markdown, write_table


def _write(path, obj, *, raw=None):
    path.write_text(raw if raw is not None else json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path):
    zeroshot = _write(
        tmp_path / "zs.json",
        {
            "model": "ViT-B-32",
            "pretrained": "laion2b",
            "results": [
                {
                    "model": "ViT-B-32",
                    "pretrained": "laion2b",
                    "dataset": "cars",
                    "task": "zeroshot_classification",
                    "metrics": {"top1": 0.5, "top5": 0.9, "mean_per_class_recall": 0.45},
                },
                {
                    "model": "ViT-B-32",
                    "pretrained": "laion2b",
                    "dataset": "pets",
                    "task": "zeroshot_classification",
                    "metrics": {"top1": 0.8, "top5": None, "mean_per_class_recall": 0.75},
                },
            ],
        },
    )
    # CLIP_benchmark's own dump: its names, and the bare NaN it writes for top-5 of < 5 classes
    benchmark = _write(
        tmp_path / "cb.json",
        None,
        raw='{"dataset": "pets", "model": "RN50", "pretrained": "openai", "task": "zeroshot_classification", '
        '"metrics": {"acc1": 0.7, "acc5": NaN, "mean_per_class_recall": 0.6}, "language": "en"}',
    )
    probe = _write(
        tmp_path / "lp.json",
        {
            "dataset": "cars",
            "model": "RN50",
            "pretrained": "openai",
            "task": "linear_probe",
            "metrics": {"lp_acc1": 0.9, "lp_acc5": 0.99, "lp_mean_per_class_recall": 0.88},
            "language": "en",
        },
    )
    retrieval = _write(
        tmp_path / "ret.json",
        {
            "model": "ViT-B-32",
            "pretrained": "laion2b",
            "dataset": "flickr",
            "task": "zeroshot_retrieval",
            "metrics": {
                "image_to_text_R@1": 0.6,
                "text_to_image_R@1": 0.4,
                "image_to_text_R@5": 0.9,
                "text_to_image_R@5": 0.8,
            },
        },
    )
    return zeroshot, benchmark, probe, retrieval


def test_three_files_of_two_kinds_make_one_table(files):
    zeroshot, benchmark, probe, _ = files
    table = build_table([zeroshot, benchmark, probe])
    assert table.rows == [("ViT-B-32", "laion2b"), ("RN50", "openai")]
    labels = [table.column_label(c) for c in table.columns]
    assert labels == ["cars (zero-shot)", "pets", "cars (linear probe)"]
    markdown = render_markdown(table)
    assert "| ViT-B-32 | laion2b | 50.00 | 80.00 | - | - |" in markdown
    assert "| RN50 | openai | - | 70.00 | 90.00 | - |" in markdown
    rows = list(csv.reader(render_csv(table).splitlines()))
    assert rows[0] == ["model", "pretrained", "cars (zero-shot)", "pets", "cars (linear probe)", "average"]
    assert rows[1][2:] == ["50.0000", "80.0000", "", ""]
    assert "<td class=num>90.00</td>" in render_html(table)


def test_average_only_over_complete_rows(files):
    zeroshot, benchmark, _, retrieval = files
    table = build_table([zeroshot, retrieval])
    row = ("ViT-B-32", "laion2b")
    # retrieval counts as the mean of both directions' recall@1
    assert table.values[(row, ("flickr", "zeroshot_retrieval", ""))] == pytest.approx(0.5)
    assert table.average(row) == pytest.approx((0.5 + 0.8 + 0.5) / 3)
    table = build_table([zeroshot, benchmark])
    assert table.average(("RN50", "openai")) is None  # RN50 has no cars result


def test_other_metrics_and_nan_cells(files):
    zeroshot, benchmark, _, retrieval = files
    table = build_table([zeroshot, benchmark, retrieval], metric="top5")
    assert (("RN50", "openai"), ("pets", "zeroshot_classification", "")) not in table.values  # NaN: no number
    assert (("ViT-B-32", "laion2b"), ("flickr", "zeroshot_retrieval", "")) not in table.values
    assert build_table([retrieval], metric="recall@5").values[
        (("ViT-B-32", "laion2b"), ("flickr", "zeroshot_retrieval", ""))
    ] == pytest.approx(0.85)


def test_the_plot_is_a_png_that_opens(files, tmp_path):
    table = build_table(list(files))
    path = plot_table(table, tmp_path / "fig.png")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 480
    write_table(table, tmp_path / "t.html")
    assert (tmp_path / "t.html").read_text().startswith("<!DOCTYPE html>")


def test_bad_inputs_are_one_line_errors(files, tmp_path):
    zeroshot, benchmark, probe, _ = files
    with pytest.raises(ClipctlError, match="both hold zeroshot_classification results of ViT-B-32"):
        build_table([zeroshot, zeroshot])
    with pytest.raises(ClipctlError, match="no such results file"):
        build_table([tmp_path / "missing.json"])
    with pytest.raises(ClipctlError, match="is not a JSON results file"):
        build_table([_write(tmp_path / "junk.json", None, raw="{not json")])
    with pytest.raises(ClipctlError, match="is not a results file"):
        build_table([_write(tmp_path / "other.json", {"hello": 1})])
    with pytest.raises(ClipctlError, match="task 'captioning' is not one this report knows"):
        build_table(
            [
                _write(
                    tmp_path / "cap.json", {"model": "m", "dataset": "d", "task": "captioning", "metrics": {}}
                )
            ]
        )
    with pytest.raises(ClipctlError, match="unknown --metric"):
        build_table([probe], metric="acc1")
    with pytest.raises(ClipctlError, match="unknown table format '.txt'"):
        write_table(build_table([probe]), tmp_path / "t.txt")


def test_few_shot_runs_and_same_named_folders_get_their_own_columns(tmp_path):
    def doc(task, data, **extra):
        return {
            "model": "m",
            "pretrained": "p",
            "dataset": "heldout",
            "task": task,
            "data": data,
            "metrics": {"top1": 0.5},
            **extra,
        }

    files = [
        _write(tmp_path / "a.json", doc("zeroshot_classification", "runs/a/heldout")),
        _write(tmp_path / "b.json", doc("zeroshot_classification", "runs/b/heldout")),
        _write(tmp_path / "c.json", doc("linear_probe", "runs/b/heldout", few_shot=None)),
        _write(tmp_path / "d.json", doc("linear_probe", "runs/b/heldout", few_shot=4)),
    ]
    table = build_table(files)
    assert [table.column_label(c) for c in table.columns] == [
        "a/heldout",
        "b/heldout (zero-shot)",
        "b/heldout (linear probe)",
        "b/heldout (4-shot linear probe)",
    ]
