"""The faster pixel path of the training loader: simplejpeg decodes to PIL's pixels (else PIL decodes), uint8
batches turned into floats where the model is equal today's float batches bit for bit for a fixed seed, and a
resumed epoch still continues with the same batches."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipctl.train import pixels
from clipctl.train.data import build_train_data
from clipctl.transforms import image_transform
from tests.train.test_data_wds import captions, cfg, fake_tokenizer, write_shards

CPU = torch.device("cpu")


def _photo(seed: int, size: tuple[int, int] = (40, 56)) -> Image.Image:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    return Image.fromarray(smooth).resize(size[::-1], Image.BILINEAR)


def _encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _pil_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize(
    ("mode", "options", "fast"),
    [
        ("RGB", {}, True),
        ("RGB", {"subsampling": 0}, True),
        ("RGB", {"subsampling": 1}, True),
        ("RGB", {"progressive": True}, True),
        ("RGB", {"quality": 40}, True),
        ("L", {}, True),
        ("CMYK", {}, False),
    ],
)
def test_decoded_pixels_equal_pils(mode, options, fast):
    data = _encode(_photo(1).convert(mode), **options)
    assert (pixels._decode_jpeg(data) is not None) == fast  # ordinary colour JPEGs take the simplejpeg path
    assert np.array_equal(np.asarray(pixels.decode_rgb(data)), _pil_rgb(data))


def test_png_and_truncated_jpeg():
    png = _encode(_photo(2), "PNG")
    assert np.array_equal(np.asarray(pixels.decode_rgb(png)), _pil_rgb(png))
    with pytest.raises(Exception):  # noqa: B017 - the loader skips on any exception
        pixels.decode_rgb(_encode(_photo(3))[:200])


def _jpeg_shards(folder: Path, counts: list[int]) -> list[str]:
    return write_shards(folder, counts, "j", image=lambda seed: _encode(_photo(seed)), ext="jpg")


def _batches(info, epoch: int = 0) -> list[tuple[torch.Tensor, list[str]]]:
    info.set_epoch(epoch)
    return [(info.to_input(images, CPU), captions(tokens)) for images, tokens in info.dataloader]


@pytest.fixture
def pil_only(monkeypatch):
    """Today's decoder: PIL for every image."""
    monkeypatch.setattr(pixels, "_decode_jpeg", lambda data: None)


@pytest.mark.parametrize("workers", [0, 2])
def test_uint8_batches_equal_todays_float_batches(tmp_path, workers, monkeypatch):
    shards = _jpeg_shards(tmp_path, [6, 6])
    transform = image_transform(32, is_train=True)
    c = cfg(train_data=shards, batch_size=3, workers=workers, seed=5)
    fast = build_train_data(c, transform, fake_tokenizer)
    first = next(iter(fast.dataloader))[0]
    assert first.dtype == torch.uint8 and first.shape == (3, 3, 32, 32)
    new = _batches(fast)
    monkeypatch.setattr(pixels, "_decode_jpeg", lambda data: None)
    today = _batches(build_train_data(c, transform, fake_tokenizer, uint8_batches=False))
    assert today[0][0].dtype == torch.float32
    assert [caps for _, caps in new] == [caps for _, caps in today]
    for (a, _), (b, _) in zip(new, today, strict=True):
        assert torch.equal(a, b)


def test_csv_uint8_batches_equal_todays(tmp_path, pil_only):
    rows = []
    for i in range(8):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(_encode(_photo(i)))
        rows.append(f"{path}\tc {i}")
    table = tmp_path / "train.csv"
    table.write_text("filepath\ttitle\n" + "\n".join(rows) + "\n")
    c = cfg(train_data=str(table), batch_size=4, seed=1)
    transform = image_transform(24, is_train=True)
    today = _batches(build_train_data(c, transform, fake_tokenizer, uint8_batches=False))
    new = _batches(build_train_data(c, transform, fake_tokenizer))
    assert [caps for _, caps in new] == [caps for _, caps in today]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(new, today, strict=True))


def test_uint8_resume_continues_with_the_same_batches(tmp_path):
    shards = _jpeg_shards(tmp_path, [6, 6])
    c = cfg(train_data=shards, batch_size=2, workers=2, seed=3)
    transform = image_transform(16, is_train=True)
    full = _batches(build_train_data(c, transform, fake_tokenizer, epoch=1), 1)
    resumed = _batches(build_train_data(c, transform, fake_tokenizer, epoch=1, skip_batches=3), 1)
    assert [caps for _, caps in resumed] == [caps for _, caps in full[3:]]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(resumed, full[3:], strict=True))


def test_transforms_that_cannot_split_stay_whole():
    from torchvision import transforms as T

    whole = T.Compose([T.RandomResizedCrop(8), T.ToTensor()])
    host, to_input = pixels.split_uint8(whole)
    assert host is whole and to_input.mean is None


def test_seeded_call_draws_what_torch_manual_seed_draws():
    import random

    from clipctl.train.data_common import seeded_call

    def draw(_):
        return torch.rand(3).tolist(), random.random()

    torch.manual_seed(77)
    random.seed(77)
    expected = draw(None)
    before = torch.get_rng_state()
    assert seeded_call(draw, None, 77) == expected
    assert torch.equal(torch.get_rng_state(), before)


def test_default_transform_crops_decoded_arrays_like_pil_images():
    from clipctl.train.data_common import seeded_call

    host, _ = pixels.split_uint8(image_transform(32, is_train=True))
    assert pixels.accepts_arrays(host)
    data = _encode(_photo(9, (64, 80)))
    with Image.open(io.BytesIO(data)) as img:
        pil = img.convert("RGB")
    for seed in range(5):
        from_array = seeded_call(host, pixels.decode_rgb(data, as_array=True), seed)
        assert torch.equal(from_array, seeded_call(host, pil, seed))
