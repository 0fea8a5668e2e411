"""`run_demo --quick` end to end (generated shards -> train -> zeroshot -> embed -> PNGs), plus the small
pieces of the report it is built from."""

import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipctl.demo import run_demo
from clipctl.demo.pipeline import _top_k, steady_samples_per_second, summarize_loss
from clipctl.errors import ClipctlError, RunFailure

# 32 colour x shape classes: chance is 1/32. The quick run measured 43% top-1; colours alone, learnt within its
# first few dozen steps, already give up to 25%. The bar (4x chance) sits well below both, so scheduling noise
# cannot fail it, and far above what an untrained or broken pipeline scores (about 3%).
QUICK_MIN_TOP1 = 4 / 32


@pytest.mark.slow
def test_quick_demo_learns_well_above_chance_through_the_normal_paths(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(out, quick=True, seed=0)

    assert report.num_classes == 32
    assert report.top1 > QUICK_MIN_TOP1, f"zero-shot top-1 {report.top1:.3f} is not well above chance"
    assert report.top5 >= report.top1
    assert report.loss.last < report.loss.first
    assert report.samples_per_second > 0

    run_dir = out / "runs" / "demo"
    assert report.run_dir == str(run_dir)
    for name in ("config.yaml", "metrics.jsonl", "out.log", "loss_curve.png", "predictions.png"):
        assert (run_dir / name).is_file(), name
    assert report.checkpoint.startswith(str(run_dir / "checkpoints"))
    assert Image.open(report.loss_curve_png).format == "PNG"
    assert Image.open(report.predictions_png).format == "PNG"

    results = json.loads((out / "zeroshot.json").read_text())
    assert _top_k(results, 1) == pytest.approx(report.top1)
    embeddings = pq.read_table(report.embeddings_parquet)
    assert embeddings.num_rows == report.num_heldout == report.num_embedded

    search = report.search  # the held-out images indexed and searched by text, one query per class
    assert (out / "index" / "clipctl_index.json").is_file() and search["top"][0]["rank"] == 1
    assert search["k"] == 4 and search["precision"] >= search["bound"] > report.chance_top1

    manifest = json.loads((out / "demo.json").read_text())
    assert manifest["status"] == "done" and manifest["report"]["top1"] == report.top1

    # the same folder with another seed holds a different run: refused, and nothing is deleted
    with pytest.raises(ClipctlError, match="different demo run"):
        run_demo(out, quick=True, seed=1)
    assert (run_dir / "config.yaml").is_file()


def test_loss_summary_reports_first_last_and_min():
    records = [{"step": 10, "loss": 4.0}, {"step": 20, "loss": 2.0}, {"step": 30, "loss": 2.5}]
    summary = summarize_loss(records)
    assert (summary.first, summary.last, summary.min, summary.min_step, summary.steps) == (
        4.0,
        2.5,
        2.0,
        20,
        30,
    )


def test_loss_summary_without_records_is_a_run_failure():
    with pytest.raises(RunFailure):
        summarize_loss([])


def test_samples_per_second_leaves_out_the_start_up_window():
    records = [
        {"samples_per_second": 5.0},
        {"samples_per_second": 100.0},
        {"samples_per_second": 110.0},
        {"samples_per_second": 90.0},
    ]
    assert steady_samples_per_second(records) == 100.0


def test_top_k_reads_the_zero_shot_documents_metrics():
    doc = {"metrics": {"top1": 0.25, "top5": 0.75, "mean_per_class_recall": 0.5}, "num_samples": 8}
    assert (_top_k(doc, 1), _top_k(doc, 5)) == (0.25, 0.75)
    with pytest.raises(RunFailure, match="no metrics.top5"):
        _top_k({"metrics": {"top1": 0.25}}, 5)
    with pytest.raises(RunFailure, match="no metrics.top1"):
        _top_k({"top1": 0.25}, 1)  # the document keeps its scores under "metrics"
