"""`clipctl index`'s job: exact and approximate indexes, --append, the folder layout's crash safety, and
one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipctl.errors import ClipctlError
from clipctl.search import IndexOptions, SearchIndex, append_index, build_index, layout
from clipctl.search.tuning import recall_at_k
from tests.search.search_data import exact_top_k, random_parquet


def _vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_exact_index_returns_what_numpy_finds(tmp_path):
    vectors = _vectors(3000, 32)
    src = random_parquet(tmp_path / "emb.parquet", vectors)
    summary = build_index(src, tmp_path / "idx")
    assert (summary.kind, summary.total, summary.expected_recall) == ("exact", 3000, 1.0)

    index = SearchIndex(tmp_path / "idx")
    queries = _vectors(20, 32, seed=1)
    scores, ids = index.search_ids(queries, 10)
    np.testing.assert_array_equal(ids, exact_top_k(vectors, queries, 10))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = (queries[0] / np.linalg.norm(queries[0])) @ unit[ids[0]].T
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5)
    hits = index.search(queries[0], 3)[0]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].key == f"img/{ids[0][0]}.jpg" and hits[0].id == ids[0][0]


def test_approximate_index_meets_its_recall_target_on_new_queries(tmp_path):
    vectors = _vectors(8000, 64)
    src = random_parquet(tmp_path / "emb.parquet", vectors)
    summary = build_index(src, tmp_path / "idx", IndexOptions(exact_below=0, target_recall=0.95))
    assert (
        summary.kind == "approximate"
        and summary.factory.startswith("IVF")
        and summary.factory.endswith("SQ8")
    )
    assert summary.expected_recall >= 0.95 and summary.recall_sample == 800

    index = SearchIndex(tmp_path / "idx")
    queries = _vectors(200, 64, seed=2)  # random data: no cluster structure to exploit, the hardest case
    _, ids = index.search_ids(queries, 10)
    measured = recall_at_k(ids, exact_top_k(vectors, queries, 10))
    assert measured >= 0.95
    assert abs(measured - summary.expected_recall) < 0.05  # what `clipctl index` prints is what users get

    _, fewer = index.search_ids(queries, 10, nprobe=1)  # visiting one list instead loses most neighbours
    assert recall_at_k(fewer, exact_top_k(vectors, queries, 10)) < 0.5
    _, exact = index.search_ids(queries, 10, exact=True)
    np.testing.assert_array_equal(exact, exact_top_k(vectors, queries, 10))


def test_index_folder_is_memory_mapped(tmp_path):
    vectors = _vectors(2000, 16)
    build_index(
        random_parquet(tmp_path / "emb.parquet", vectors), tmp_path / "idx", IndexOptions(exact_below=0)
    )
    index = SearchIndex(tmp_path / "idx")
    assert isinstance(index.vectors, np.memmap) and index.vectors.mode == "r"
    manifest = json.loads((tmp_path / "idx" / layout.MANIFEST).read_text())
    assert manifest["count"] == 2000 and manifest["dim"] == 16 and manifest["model"] == "tiny-ViT-8-64"
    assert (tmp_path / "idx" / manifest["faiss_file"]).is_file()


@pytest.mark.parametrize("exact_below", [100_000, 0])
def test_append_adds_only_new_rows_and_matches_a_fresh_build(tmp_path, exact_below):
    vectors = _vectors(6000, 32)
    options = IndexOptions(exact_below=exact_below)
    build_index(random_parquet(tmp_path / "first.parquet", vectors[:4000]), tmp_path / "idx", options)
    summary = append_index(random_parquet(tmp_path / "all.parquet", vectors), tmp_path / "idx", options)
    assert (summary.added, summary.skipped_known, summary.total) == (2000, 4000, 6000)

    index = SearchIndex(tmp_path / "idx")
    queries = _vectors(50, 32, seed=3)
    _, ids = index.search_ids(queries, 10)
    assert recall_at_k(ids, exact_top_k(vectors, queries, 10)) >= (1.0 if exact_below else 0.9)
    hit = index.search(vectors[5000], 1)[0][0]
    assert (hit.id, hit.key) == (5000, "img/5000.jpg")

    again = append_index(tmp_path / "all.parquet", tmp_path / "idx", options)
    assert (again.added, again.skipped_known, again.total) == (0, 6000, 6000)


def test_append_recovers_from_an_interrupted_append(tmp_path):
    vectors = _vectors(3000, 16)
    options = IndexOptions(exact_below=0)
    folder = tmp_path / "idx"
    build_index(random_parquet(tmp_path / "a.parquet", vectors[:2000]), folder, options)
    # what a crash after writing the new vectors and files, but before the manifest, leaves behind
    with open(folder / layout.VECTORS, "ab") as handle:
        handle.write(b"\x00" * 16 * 4 * 7)
    (folder / "rows" / "part-00001.arrow").write_bytes(b"half written")
    (folder / "ivf-00001.faiss").write_bytes(b"half written")
    index = SearchIndex(folder)  # readers ignore all of it
    assert index.count == 2000

    append_index(random_parquet(tmp_path / "b.parquet", vectors), folder, options)
    index = SearchIndex(folder)
    assert index.count == 3000
    assert (folder / layout.VECTORS).stat().st_size == 3000 * 16 * 4
    np.testing.assert_allclose(index.vector(2500), vectors[2500] / np.linalg.norm(vectors[2500]), rtol=1e-6)
    assert sorted(p.name for p in folder.glob("*.faiss")) == [index.manifest["faiss_file"]]


def test_invalid_and_repeated_rows_are_skipped_and_counted(tmp_path):
    vectors = _vectors(100, 8)
    vectors[3] = np.nan
    src = random_parquet(tmp_path / "emb.parquet", np.concatenate([vectors, vectors[:5]]))
    table = pq.read_table(src)
    keys = table.column("path").to_pylist()[:100] + table.column("path").to_pylist()[:5]
    pq.write_table(table.set_column(0, "path", [keys]), src)
    summary = build_index(src, tmp_path / "idx")
    assert (summary.added, summary.skipped_invalid, summary.duplicates) == (99, 2, 4)  # row 3 twice


def test_refusals_are_one_line_and_leave_the_index_alone(tmp_path):
    vectors = _vectors(50, 8)
    src = random_parquet(tmp_path / "emb.parquet", vectors)
    build_index(src, tmp_path / "idx")
    before = (tmp_path / "idx" / layout.MANIFEST).read_bytes()

    with pytest.raises(ClipctlError, match="already holds an index; pass --append"):
        build_index(src, tmp_path / "idx")
    other = random_parquet(tmp_path / "other.parquet", vectors, settings={"model": "ViT-B-32"})
    with pytest.raises(ClipctlError, match="model=tiny-ViT-8-64.*model=ViT-B-32"):
        append_index(other, tmp_path / "idx")
    wider = random_parquet(tmp_path / "wide.parquet", _vectors(5, 16))
    with pytest.raises(ClipctlError, match="dim=8.*dim=16"):
        append_index(wider, tmp_path / "idx")
    assert (tmp_path / "idx" / layout.MANIFEST).read_bytes() == before

    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "keep.txt").write_text("mine")
    with pytest.raises(ClipctlError, match="not an index folder"):
        build_index(src, tmp_path / "stuff", IndexOptions(overwrite=True))
    with pytest.raises(ClipctlError, match="raise --max-index-memory"):
        build_index(src, tmp_path / "small", IndexOptions(max_index_memory="200"))
    assert not (tmp_path / "small").exists()
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ClipctlError, match="not a Parquet file"):
        build_index(tmp_path / "bad.parquet", tmp_path / "idx2")
    with pytest.raises(ClipctlError, match="no such index folder"):
        SearchIndex(tmp_path / "missing")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folders left


def test_overwrite_replaces_the_index_whole(tmp_path):
    build_index(random_parquet(tmp_path / "a.parquet", _vectors(40, 8)), tmp_path / "idx")
    build_index(
        random_parquet(tmp_path / "b.parquet", _vectors(30, 8)),
        tmp_path / "idx",
        IndexOptions(overwrite=True),
    )
    assert SearchIndex(tmp_path / "idx").count == 30
