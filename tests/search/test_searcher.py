"""Text, image and vector queries through the index's own model: an indexed image finds itself, captions are
found from images, and a query model that does not match the index is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from clipctl.errors import ClipctlError
from clipctl.search import IndexOptions, Searcher, SearchIndex, build_index, search
from tests.search.search_data import embed_folder, embed_options, indexed_shapes, random_parquet


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("searcher")
    weights, paths = indexed_shapes(root, per_class=4)
    return root, weights, paths


def test_an_indexed_image_finds_itself_first(indexed):
    root, _, paths = indexed
    searcher = Searcher(root / "idx")
    for path in paths[::7]:
        best = searcher.search(image=path, k=3)[0]
        assert best.file == str(path.resolve()) and best.key == path.relative_to(root / "images").as_posix()
        assert best.score == pytest.approx(1.0, abs=1e-4)  # same model, same preprocessing as `clipctl embed`


def test_text_and_vector_queries_and_the_one_call_api(indexed):
    root, _, paths = indexed
    hits = search(root / "idx", text="a photo of a red circle", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(h.file and h.score <= 1.0 for h in hits) and hits[0].score >= hits[-1].score
    index = SearchIndex(root / "idx")
    by_row = Searcher(index).search(row=7, k=1)[0]
    assert by_row.id == 7
    vector = index.vector(7) * 3.0  # vectors are normalised on the way in
    assert Searcher(index).search(vector=vector, k=1)[0].id == 7
    with pytest.raises(ClipctlError, match="exactly one query"):
        Searcher(index).search(text="x", row=1)
    with pytest.raises(ClipctlError, match="128"):
        index.search(np.ones(5, dtype=np.float32), 3)


def test_captions_are_found_from_images_and_text(indexed, tmp_path):
    root, weights, paths = indexed
    from clipctl.embed import embed_texts

    captions = tmp_path / "captions.txt"
    lines = ["a red circle", "a blue square", "a green triangle", "a yellow star"]
    captions.write_text("\n".join(lines) + "\n")
    embed_texts(captions, tmp_path / "captions.parquet", embed_options(weights))
    build_index(tmp_path / "captions.parquet", tmp_path / "cap-idx")
    searcher = Searcher(tmp_path / "cap-idx")
    assert searcher.index.modality == "text"
    best = searcher.search(text="a blue square", k=2)[0]
    assert (best.caption, best.key, best.file) == ("a blue square", 1, None)
    from_image = searcher.search(image=paths[0], k=4)  # image -> text
    assert sorted(h.caption for h in from_image) == sorted(lines)


def test_clip_retrieval_layout_indexes_the_same_rows(indexed, tmp_path):
    root, weights, paths = indexed
    embed_folder(root / "images", tmp_path / "cr", weights, format="clip-retrieval")
    build_index(tmp_path / "cr", tmp_path / "idx")
    best = Searcher(tmp_path / "idx").search(image=paths[3], k=1)[0]
    assert best.file == str(paths[3].resolve()) and best.score == pytest.approx(
        1.0, abs=1e-3
    )  # float16 there


def test_a_query_model_that_differs_from_the_index_is_refused(indexed, tmp_path):
    root, weights, _ = indexed
    with pytest.raises(ClipctlError, match="holds embeddings of tiny-ViT-8-64; --model tiny-RN-demo"):
        _ = Searcher(root / "idx", model="tiny-RN-demo").encoder
    with pytest.raises(ClipctlError, match="differs"):
        _ = Searcher(root / "idx", pretrained=str(tmp_path / "other.pt")).encoder

    moved = tmp_path / "idx"
    shutil.copytree(root / "idx", moved)
    (tmp_path / "w").mkdir()
    copy = shutil.copy(weights, tmp_path / "w" / "weights.pt")
    manifest_path = moved / "clipctl_index.json"
    import json

    manifest = json.loads(manifest_path.read_text())
    manifest["weights_file"] = manifest["pretrained"] = str(tmp_path / "gone.pt")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ClipctlError, match="gone; pass --pretrained with where it is now"):
        _ = Searcher(moved).encoder
    assert Searcher(moved, pretrained=str(copy)).search(text="a red circle", k=1)  # weights that moved

    random_weights = random_parquet(tmp_path / "rand.parquet", np.ones((3, 128), np.float32))
    build_index(random_weights, tmp_path / "rand-idx")
    with pytest.raises(ClipctlError, match="randomly initialised weights"):
        Searcher(tmp_path / "rand-idx").search(text="anything")
    assert Searcher(tmp_path / "rand-idx").search(vector=np.ones(128, np.float32), k=2)  # vectors still work


def test_approximate_index_of_real_embeddings_finds_itself(indexed, tmp_path):
    root, _, paths = indexed
    build_index(root / "emb.parquet", tmp_path / "ivf", IndexOptions(exact_below=0))
    searcher = Searcher(tmp_path / "ivf")
    assert searcher.index.plan.kind == "approximate"
    assert searcher.search(image=paths[5], k=1)[0].file == str(paths[5].resolve())
