"""Text search with the demo's trained model on its held-out images: precision@10 of one query per class,
asserted against a bound derived from the same model's zero-shot accuracy (``precision_bound``)."""

from __future__ import annotations

import pytest

from clipctl.demo import run_demo
from clipctl.demo.settings import DemoSettings
from clipctl.search import IndexOptions, Searcher, build_index
from clipctl.search.metrics import precision_bound
from clipctl.search.tuning import recall_at_k

# The quick demo's training, with 12 held-out images per class so that precision@10 can reach 1.
SETTINGS = DemoSettings(recipe="demo_quick", num_train=2_048, num_heldout_per_class=12, samples_per_shard=512)


@pytest.mark.slow
def test_precision_at_10_per_class_is_bounded_by_zero_shot_accuracy(tmp_path):
    report = run_demo(tmp_path / "demo", settings=SETTINGS, seed=0)  # its last step indexes and searches
    search = report.search
    per_class = search["per_class"]
    print(
        f"\nzero-shot top-1 {report.top1:.3f} (chance {report.chance_top1:.3f}); "
        f"mean precision@10 {search['precision']:.3f} (bound {search['bound']:.3f})"
    )
    print("  ".join(f"{name}: {p:.1f}" for name, p in per_class.items()))
    assert search["k"] == 10 and len(per_class) == 32
    assert search["bound"] == pytest.approx(precision_bound(report.top1, report.chance_top1))
    assert search["precision"] >= search["bound"], "mean precision@10 below half way from chance to top-1"
    above_chance = sum(p > report.chance_top1 for p in per_class.values())
    assert above_chance >= 0.75 * len(per_class), f"only {above_chance} classes above chance"

    # the same trained embeddings through an approximate index: it finds what the exact one finds
    searcher = Searcher(search["index_dir"])
    build_index(report.embeddings_parquet, tmp_path / "ivf", IndexOptions(exact_below=0))
    approximate = Searcher(tmp_path / "ivf")
    vectors = searcher.encoder.texts([f"a photo of a {name}." for name in per_class])
    _, exact_ids = searcher.index.search_ids(vectors, 10)
    _, approx_ids = approximate.index.search_ids(vectors, 10)
    assert recall_at_k(approx_ids, exact_ids) >= 0.95
