"""`run_retrieval` end to end: CSV (several captions per image, a corrupt image), shards, CLIP_benchmark's
retrieval layout and result shape."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import clipctl
from clipctl.errors import ClipctlError
from clipctl.eval.retrieval import multi_caption_retrieval_metrics
from clipctl.eval.retrieval_job import RetrievalOptions, run_retrieval
from tests.eval.eval_data import make_clip_benchmark_retrieval, make_image_folder, tiny_model_files, write_tar

ROWS = [
    ("x/0.png", "a red square"),
    ("x/1.png", "a blue circle"),
    ("x/0.png", "a crimson box"),
    ("x/2.png", "a green star"),
    ("x/broken.png", "never read"),
    ("x/3.png", "a yellow moon"),
    ("x/2.png", "an emerald star"),
    ("x/4.png", "a purple heart"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_files(tmp_path_factory.mktemp("model"), seed=1)


@pytest.fixture
def csv_data(tmp_path):
    make_image_folder(tmp_path / "imgs", {"x": 5})
    (tmp_path / "imgs" / "x" / "broken.png").write_bytes(b"garbage")
    csv = tmp_path / "imgs" / "pairs.csv"
    csv.write_text("filepath,title\n" + "".join(f"{p},{c}\n" for p, c in ROWS))
    return csv


def _expected(config, weights, folder, rows):
    """Embed the readable images and their captions directly, then score with the unchunked definition."""
    model, _, preprocess = clipctl.create_model_and_transforms(config, weights)
    model.eval()
    tokenizer = clipctl.get_tokenizer(config)
    images = list(dict.fromkeys(p for p, _ in rows if "broken" not in p))
    captions = [(images.index(p), c) for p, c in rows if p in images]
    captions.sort(key=lambda item: item[0])  # the job keeps each image's captions together, in CSV order
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(folder / p).convert("RGB")) for p in images])
        img = model.encode_image(pixels, normalize=True)
        txt = model.encode_text(tokenizer([c for _, c in captions]), normalize=True)
    return multi_caption_retrieval_metrics(
        img, txt, torch.tensor([i for i, _ in captions]), chunk_size=10_000
    )


def test_csv_with_several_captions_and_a_corrupt_image(tiny, csv_data, tmp_path):
    config, weights = tiny
    out = tmp_path / "retrieval.json"
    results = run_retrieval(
        RetrievalOptions(config, weights, csv_data, out, batch_size=2, workers=0, chunk_size=2)
    )
    assert results["dataset"] == "pairs" and results["task"] == "zeroshot_retrieval"
    assert results["num_images"] == 5 and results["num_texts"] == 7
    assert results["num_unreadable"] == 1 and results["unreadable"][0][0] == "x/broken.png"
    expected = _expected(config, weights, csv_data.parent, ROWS)
    assert results["metrics"].keys() == expected.keys()
    for key, value in expected.items():
        assert results["metrics"][key] == pytest.approx(value), key
    assert json.loads(out.read_text()) == results


def test_clip_benchmark_format_names(tiny, csv_data, tmp_path):
    config, weights = tiny
    out = tmp_path / "cb.json"
    written = run_retrieval(
        RetrievalOptions(config, weights, csv_data, out, format="clip_benchmark", workers=0)
    )
    assert set(written) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
    assert set(written["metrics"]) == {
        f"{kind}_retrieval_recall@{k}" for kind in ("image", "text") for k in (1, 5, 10)
    }
    ours = run_retrieval(RetrievalOptions(config, weights, csv_data, workers=0))
    assert written["metrics"]["image_retrieval_recall@1"] == ours["metrics"]["text_to_image_R@1"]
    assert written["metrics"]["text_retrieval_recall@5"] == ours["metrics"]["image_to_text_R@5"]


def test_shards_and_clip_benchmark_folder(tiny, tmp_path):
    from tests.eval.eval_data import image_bytes

    config, weights = tiny
    members = {}
    for i in range(5):
        members[f"{i:03d}.jpg"] = image_bytes(i, "JPEG")
        members[f"{i:03d}.txt"] = f"caption number {i}".encode()
    shard = write_tar(tmp_path / "shards" / "00000.tar", members)
    results = run_retrieval(RetrievalOptions(config, weights, str(shard), workers=0))
    assert results["source"] == "shards" and results["num_images"] == 5 and results["num_texts"] == 5

    root = make_clip_benchmark_retrieval(tmp_path / "wds_tiny_flickr", [["a", "b"], ["c"], ["d", "e"], ["f"]])
    results = run_retrieval(RetrievalOptions(config, weights, str(root), workers=2, batch_size=1))
    assert results["dataset"] == "wds/tiny_flickr" and results["source"] == "clip_benchmark"
    assert results["num_images"] == 4 and results["num_texts"] == 6


def test_bad_input(tiny, csv_data, tmp_path):
    config, weights = tiny
    with pytest.raises(ClipctlError, match="has no column 'path'"):
        run_retrieval(RetrievalOptions(config, weights, csv_data, csv_img_key="path"))
    only_broken = tmp_path / "broken.csv"
    only_broken.write_text(f"filepath,title\n{csv_data.parent / 'x' / 'broken.png'},nope\n")
    with pytest.raises(ClipctlError, match="all 1 were unreadable"):
        run_retrieval(RetrievalOptions(config, weights, only_broken, workers=0))
    with pytest.raises(ClipctlError, match="unknown --precision"):
        run_retrieval(RetrievalOptions(config, weights, csv_data, precision="fp8"))
    with pytest.raises(ClipctlError, match="float16.*use --precision bf16"):
        run_retrieval(RetrievalOptions(config, weights, csv_data, precision="fp16"))


def test_bf16_weights(tiny, csv_data):
    config, weights = tiny
    results = run_retrieval(RetrievalOptions(config, weights, csv_data, precision="bf16", workers=0))
    assert results["num_images"] == 5 and 0 <= results["metrics"]["image_to_text_R@1"] <= 1
