"""Recall@10 of the approximate index against plain numpy exact search on real embeddings: a model's
embeddings of generated shape images, queried with new images and with text (queries of the other modality
sit apart from the indexed vectors, which the tuning sample does not cover)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipctl.data.synth import TEMPLATES, class_folders
from clipctl.search import IndexOptions, Searcher, build_index
from clipctl.search.tuning import recall_at_k
from tests.search.search_data import embed_folder, exact_top_k, shape_images, tiny_weights


@pytest.mark.slow
def test_approximate_recall_on_embeddings_of_generated_images(tmp_path):
    weights = tiny_weights(tmp_path)
    shape_images(tmp_path / "images", per_class=40, classes=32)
    parquet = embed_folder(tmp_path / "images", tmp_path / "emb.parquet", weights)
    summary = build_index(parquet, tmp_path / "ivf", IndexOptions(exact_below=0))
    assert summary.kind == "approximate" and summary.total == 1280
    searcher = Searcher(tmp_path / "ivf")

    new_images = shape_images(tmp_path / "queries", per_class=2, classes=32, seed=1)  # not in the index
    prompts = [t.format(c=f"{colour} {shape}") for t in TEMPLATES for _, colour, shape in class_folders()]
    queries = np.concatenate([searcher.encoder.images(new_images), searcher.encoder.texts(prompts)])
    stored = np.stack(pq.read_table(parquet).column("embedding").to_numpy(zero_copy_only=False))
    truth = exact_top_k(stored, queries, 10)
    _, ids = searcher.index.search_ids(queries, 10)
    image_recall = recall_at_k(ids[: len(new_images)], truth[: len(new_images)])
    text_recall = recall_at_k(ids[len(new_images) :], truth[len(new_images) :])
    print(
        f"\nrecall@10 vs numpy: images {image_recall:.3f}, text {text_recall:.3f}, tuned {summary.expected_recall}"
    )
    assert image_recall >= 0.95 and text_recall >= 0.95
