"""`embed_images` / `embed_texts` end to end on a tiny random-weight model and generated images."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from clipctl.embed import EmbedOptions, embed_images, embed_texts
from clipctl.embed.batches import decode_image
from clipctl.errors import ClipctlError, RunFailure
from tests.helpers import TINY_VIT_CFG, write_model_config

REPO = Path(__file__).resolve().parents[2]
DIM = TINY_VIT_CFG["embed_dim"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model config and one fixed set of its random weights (so every run embeds with the same model)."""
    import clipctl

    folder = tmp_path_factory.mktemp("tiny")
    config = str(write_model_config(folder, "tiny-embed"))
    torch.manual_seed(0)
    model = clipctl.create_model(config)
    weights = folder / "weights.pt"
    torch.save(model.state_dict(), weights)
    other = folder / "other.pt"
    torch.save({k: v + 0.01 for k, v in model.state_dict().items()}, other)
    return {"model": config, "pretrained": str(weights), "other": str(other)}


def _image(rng, width, height) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def images(tmp_path) -> Path:
    """Seven readable images in nested folders, one corrupt .jpg, and a caption file that is not an image."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    names = ["a.jpg", "b.png", "c.jpeg", "sub/d.jpg", "sub/e.webp", "sub/deeper/f.jpg", "sub/deeper/g.png"]
    for i, name in enumerate(names):
        _image(rng, 40 + 7 * i, 30 + 5 * i).save(root / name)
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "sub" / "d.txt").write_text("a caption, not an image")
    return root


def _run(images, out, tiny, **kwargs):
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("batch_size", 3)
    return embed_images(
        images, out, EmbedOptions(model=tiny["model"], pretrained=tiny["pretrained"], **kwargs)
    )


def _plain_loop(tiny, paths, normalize=True) -> np.ndarray:
    """OpenCLIP's README loop on the same weights: open, preprocess, encode, normalise."""
    import clipctl

    model, _, preprocess = clipctl.create_model_and_transforms(tiny["model"], pretrained=tiny["pretrained"])
    model.eval()
    with torch.no_grad():
        features = model.encode_image(torch.stack([preprocess(Image.open(p)) for p in paths]))
        if normalize:
            features /= features.norm(dim=-1, keepdim=True)
    return features.numpy()


GOOD = ["a.jpg", "b.png", "c.jpeg", "sub/d.jpg", "sub/deeper/f.jpg", "sub/deeper/g.png", "sub/e.webp"]


def test_folder_to_parquet_read_back_by_pandas_and_pyarrow(images, tmp_path, tiny):
    out = tmp_path / "emb.parquet"
    summary = _run(images, out, tiny)
    assert (summary.embedded, summary.failed, summary.total_rows, summary.dim) == (7, 1, 7, DIM)

    table = pq.read_table(out)
    assert table.schema.field("path").type == pa.string()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["model"] == "tiny-embed" and meta["pretrained"].endswith("weights.pt")
    assert (meta["normalize"], meta["precision"], meta["dim"]) == ("true", "fp32", str(DIM))

    df = pd.read_parquet(out)
    assert sorted(df.path) == sorted(GOOD)
    vectors = np.stack(df.embedding.to_numpy())
    assert vectors.dtype == np.float32 and vectors.shape == (7, DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)

    errors = pd.read_csv(tmp_path / "emb.parquet.errors.csv")
    assert list(errors.columns) == ["path", "reason"]
    assert errors.path.tolist() == [str(images / "sub" / "broken.jpg")] and errors.reason[0]


def test_embeddings_are_identical_to_the_plain_loop_with_or_without_worker_processes(images, tmp_path, tiny):
    # Bit-for-bit needs the same batches and thread count (matrix kernels may round differently otherwise):
    # here one batch of the seven readable images, in the job's order, in this process.
    expected = _plain_loop(tiny, [images / p for p in GOOD])
    _run(images, tmp_path / "w0.parquet", tiny, batch_size=8)
    df = pd.read_parquet(tmp_path / "w0.parquet").set_index("path").loc[GOOD]
    np.testing.assert_array_equal(np.stack(df.embedding.to_numpy()), expected)
    # Worker processes each encode on their own single thread.
    _run(images, tmp_path / "w2.parquet", tiny, batch_size=8, workers=2)
    df = pd.read_parquet(tmp_path / "w2.parquet").set_index("path").loc[GOOD]
    np.testing.assert_allclose(np.stack(df.embedding.to_numpy()), expected, rtol=0, atol=1e-6)

    raw = _plain_loop(tiny, [images / p for p in GOOD], normalize=False)
    _run(images, tmp_path / "raw.parquet", tiny, normalize=False, batch_size=8)
    df = pd.read_parquet(tmp_path / "raw.parquet").set_index("path").loc[GOOD]
    np.testing.assert_array_equal(np.stack(df.embedding.to_numpy()), raw)
    assert pq.read_schema(tmp_path / "raw.parquet").metadata[b"normalize"] == b"false"
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


class Interrupted(Exception):
    pass


def _interrupt_after(n):
    def hook(done):
        if done == n:
            raise Interrupted

    return hook


def test_interrupted_run_resumes_and_embeds_every_image_exactly_once(images, tmp_path, tiny):
    out = tmp_path / "emb.parquet"
    with pytest.raises(Interrupted):
        _run(images, out, tiny, batch_size=2, chunk_rows=100, after_batch=_interrupt_after(2))
    assert not out.exists()
    assert len(list((tmp_path / "emb.parquet.parts").glob("part-*.parquet"))) == 1  # completed batches kept

    summary = _run(images, out, tiny, batch_size=2)
    # The 2 completed batches held 3 readable images and the broken one.
    assert (summary.skipped, summary.embedded, summary.total_rows) == (3, 4, 7)
    df = pd.read_parquet(out)
    assert sorted(df.path) == sorted(GOOD)
    assert not (tmp_path / "emb.parquet.parts").exists()

    again = _run(images, out, tiny)
    assert (again.embedded, again.skipped, again.total_rows) == (0, 7, 7)

    (images / "new.png").write_bytes((images / "b.png").read_bytes())
    more = _run(images, out, tiny)
    assert (more.embedded, more.total_rows) == (1, 8)
    assert pd.read_parquet(out).path.is_unique


KILL_SCRIPT = """
import os, signal, sys
from clipctl.embed import EmbedOptions, embed_images
def hook(n):
    if n == 2:
        os.kill(os.getpid(), signal.SIGKILL)
embed_images(sys.argv[1], sys.argv[2], EmbedOptions(model=sys.argv[3], pretrained=sys.argv[4], workers=0,
             batch_size=2, chunk_rows=2, after_batch=hook))
"""


def test_killed_process_resumes_and_embeds_every_image_exactly_once(images, tmp_path, tiny):
    out = tmp_path / "emb.parquet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", KILL_SCRIPT, str(images), str(out), tiny["model"], tiny["pretrained"]]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists()
    assert (tmp_path / "emb.parquet.parts" / "part-00000.parquet").exists()

    summary = _run(images, out, tiny, batch_size=2)
    assert summary.skipped >= 2 and summary.total_rows == 7
    df = pd.read_parquet(out)
    assert sorted(df.path) == sorted(GOOD)
    expected = _plain_loop(tiny, [images / p for p in GOOD])
    np.testing.assert_allclose(
        np.stack(df.set_index("path").loc[GOOD].embedding.to_numpy()), expected, atol=1e-6
    )


def test_output_for_another_model_is_refused_and_left_intact(images, tmp_path, tiny):
    out = tmp_path / "emb.parquet"
    _run(images, out, tiny)
    before = out.read_bytes()
    with pytest.raises(ClipctlError, match=r"holds embeddings made with pretrained=.*weights\.pt.*other\.pt"):
        embed_images(images, out, EmbedOptions(model=tiny["model"], pretrained=tiny["other"], workers=0))
    with pytest.raises(ClipctlError, match="normalize=true.*normalize=false"):
        _run(images, out, tiny, normalize=False)
    assert out.read_bytes() == before


def test_clip_retrieval_layout(images, tmp_path, tiny):
    out = tmp_path / "cr"
    summary = _run(images, out, tiny, format="clip-retrieval")
    assert summary.total_rows == 7
    emb = np.load(out / "img_emb" / "img_emb_0.npy")
    assert emb.dtype == np.float16 and emb.shape == (7, DIM)
    meta = pd.read_parquet(out / "metadata" / "metadata_0.parquet")
    assert meta.image_path.tolist() == [str(images / p) for p in sorted(GOOD)]
    expected = _plain_loop(tiny, meta.image_path.tolist())
    np.testing.assert_allclose(emb.astype(np.float32), expected, atol=2e-3)
    assert (tmp_path / "cr.errors.csv").exists()
    assert _run(images, out, tiny, format="clip-retrieval").embedded == 0


def test_captions_to_parquet_and_clip_retrieval(images, tmp_path, tiny):
    import clipctl

    captions = tmp_path / "caps.txt"
    captions.write_text("a photo of a dog\n\na red square\nthe same caption\nthe same caption\n")
    out = tmp_path / "text.parquet"
    summary = embed_texts(
        captions, out, EmbedOptions(model=tiny["model"], pretrained=tiny["pretrained"], batch_size=2)
    )
    assert (summary.embedded, summary.total_rows) == (4, 4)
    df = pd.read_parquet(out)
    assert df.line.tolist() == [0, 2, 3, 4] and df.text.tolist()[:2] == ["a photo of a dog", "a red square"]
    assert pq.read_schema(out).metadata[b"modality"] == b"text"

    model = clipctl.create_model(tiny["model"], pretrained=tiny["pretrained"]).eval()
    tokenizer = clipctl.get_tokenizer(tiny["model"])
    with torch.no_grad():
        expected = model.encode_text(tokenizer(df.text.tolist()))
        expected /= expected.norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(np.stack(df.embedding.to_numpy()), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert (
        embed_texts(captions, out, EmbedOptions(model=tiny["model"], pretrained=tiny["pretrained"])).embedded
        == 0
    )

    cr = tmp_path / "text_cr"
    embed_texts(
        captions,
        cr,
        EmbedOptions(model=tiny["model"], pretrained=tiny["pretrained"], format="clip-retrieval"),
    )
    assert np.load(cr / "text_emb" / "text_emb_0.npy").shape == (4, DIM)
    assert pd.read_parquet(cr / "metadata" / "metadata_0.parquet").caption.tolist()[1] == "a red square"
    with pytest.raises(ClipctlError, match="modality=text.*modality=image"):
        _run(images, out, tiny)


def _shard(path: Path, samples: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in samples.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards_split_across_workers_with_keys_and_resume(images, tmp_path, tiny):
    shards = tmp_path / "shards"
    shards.mkdir()
    for s, names in enumerate([GOOD[:4], GOOD[4:]]):
        samples = {}
        for i, name in enumerate(names):
            key = f"{s:05d}{i:04d}"
            samples[f"{key}.jpg"] = (images / name).read_bytes()
            samples[f"{key}.txt"] = b"caption"
        samples[f"{s:05d}9999.jpg"] = b"not an image"
        _shard(shards / f"{s:05d}.tar", samples)
    out = tmp_path / "emb.parquet"
    summary = _run(str(shards / "{00000..00001}.tar"), out, tiny, workers=2)
    assert (summary.embedded, summary.failed) == (7, 2)
    df = pd.read_parquet(out)
    assert sorted(df.key) == [
        "000000000",
        "000000001",
        "000000002",
        "000000003",
        "000010000",
        "000010001",
        "000010002",
    ]
    expected = _plain_loop(tiny, [images / p for p in GOOD])
    np.testing.assert_allclose(np.stack(df.sort_values("key").embedding.to_numpy()), expected, atol=1e-6)
    assert _run(shards, out, tiny).embedded == 0  # the folder of shards is the same input

    # One shard, two workers: they split its samples, each exactly once.
    single = _run(str(shards / "00000.tar"), tmp_path / "single.parquet", tiny, workers=2, batch_size=2)
    assert (single.embedded, single.failed) == (4, 1)
    assert sorted(pd.read_parquet(tmp_path / "single.parquet").key) == [f"00000000{i}" for i in range(4)]


def test_only_unreadable_images_is_a_run_failure(tmp_path, tiny):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(RunFailure, match="none of the 1 images could be read"):
        _run(tmp_path / "bad", tmp_path / "emb.parquet", tiny)
    assert not (tmp_path / "emb.parquet").exists() and (tmp_path / "emb.parquet.errors.csv").exists()


def test_bf16_weights_and_fast_decode_stay_close_to_float32(images, tmp_path, tiny):
    exact = pd.read_parquet(_run(images, tmp_path / "fp32.parquet", tiny).out).set_index("path").loc[GOOD]
    for name, kwargs in {"bf16": {"precision": "bf16"}, "fast": {"fast_decode": True}}.items():
        out = tmp_path / f"{name}.parquet"
        _run(images, out, tiny, **kwargs)
        got = pd.read_parquet(out).set_index("path").loc[GOOD]
        cosine = (np.stack(got.embedding.to_numpy()) * np.stack(exact.embedding.to_numpy())).sum(1)
        assert cosine.min() > 0.95, (name, cosine)
    assert pq.read_schema(tmp_path / "bf16.parquet").metadata[b"precision"] == b"bf16"
    assert pq.read_schema(tmp_path / "fast.parquet").metadata[b"fast_decode"] == b"true"


def test_fast_decode_lets_jpeg_decode_at_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    _image(np.random.default_rng(0), 400, 300).save(path)
    assert decode_image(path, lambda im: im.size, None) == (400, 300)
    assert decode_image(path, lambda im: im.size, (64, 64)) == (100, 75)  # 1/4 scale, still >= 64 each way
    png = tmp_path / "big.png"
    _image(np.random.default_rng(0), 400, 300).save(png)
    assert decode_image(png, lambda im: im.size, (64, 64)) == (400, 300)
