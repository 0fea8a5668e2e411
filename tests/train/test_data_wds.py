"""Webdataset training/eval loaders on tiny generated shards: epoch sizes, corrupt-sample skipping and
counting, weighted resampling, no hang on caption-less shards, and exact mid-epoch resume."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import types
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from clipctl.errors import ClipctlError
from clipctl.train import data_wds
from clipctl.train.data import build_train_data, build_val_data, validate_data_config
from clipctl.train.data_common import SkipCounter
from clipctl.train.data_wds import WdsStream

CTX = 24


def fake_tokenizer(texts: list[str]) -> torch.Tensor:
    """Bytes of the caption, so tests can read back which samples a batch holds."""
    out = torch.zeros(len(texts), CTX, dtype=torch.long)
    for i, t in enumerate(texts):
        data = t.encode()[:CTX]
        out[i, : len(data)] = torch.tensor(list(data))
    return out


def captions(tokens: torch.Tensor) -> list[str]:
    return [bytes(int(v) for v in row if v).decode() for row in tokens]


PREPROCESS = T.Compose([T.RandomResizedCrop(8, scale=(0.3, 1.0)), T.ToTensor()])


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (12, 12, 3), generator=g, dtype=torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def write_shards(
    folder: Path,
    counts: list[int],
    prefix: str = "s",
    sizes: bool = True,
    image=image_bytes,
    ext: str = "png",
) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, n in enumerate(counts):
        members = []
        for i in range(n):
            key = f"{s:03d}{i:04d}"
            members += [
                (f"{key}.{ext}", image(s * 1000 + i)),
                (f"{key}.txt", f"{prefix} {s}-{i}".encode()),
            ]
            members.append((f"{key}.json", b"{}"))
        paths.append(write_tar(folder / f"{s:05d}.tar", members))
    if sizes:
        (folder / "sizes.json").write_text(json.dumps({f"{s:05d}.tar": n for s, n in enumerate(counts)}))
    return paths


def cfg(**kw) -> types.SimpleNamespace:
    base = dict(
        train_data=None,
        val_data=None,
        train_data_upsampling_factors=None,
        train_num_samples=None,
        val_num_samples=None,
        dataset_type="auto",
        dataset_resampled=False,
        csv_separator="\t",
        csv_img_key="filepath",
        csv_caption_key="title",
        workers=0,
        batch_size=4,
        seed=0,
    )
    base.update(kw)
    return types.SimpleNamespace(**base)


@pytest.fixture
def small_buffer(monkeypatch):
    monkeypatch.setattr(data_wds, "SHUFFLE_BUFFER", 8)
    monkeypatch.setattr(data_wds, "SHUFFLE_INITIAL", 4)


def _with_corrupt_members(folder: Path) -> str:
    members = []
    for i in range(6):
        members += [(f"g{i}.jpg", image_bytes(i, "JPEG")), (f"g{i}.txt", f"good {i}".encode())]
    members += [("bad.jpg", b"\xff\xd8\xff this is not a jpeg"), ("bad.txt", b"corrupt image")]
    members += [("cls_only.cls", b"3"), ("cls_only.txt", b"no image here")]
    members += [("x.jpg", image_bytes(99, "JPEG")[:40]), ("x.txt", b"truncated image")]
    return write_tar(folder / "00000.tar", members)


def test_train_loader_yields_planned_batches_and_skips_corrupt_samples(tmp_path, small_buffer):
    shard = _with_corrupt_members(tmp_path)
    info = build_train_data(
        cfg(train_data=shard, train_num_samples=10, batch_size=3), PREPROCESS, fake_tokenizer
    )
    assert info.num_batches == 4 and info.num_samples == 12  # ceil(10/3) batches of 3
    batches = list(info.dataloader)
    assert len(batches) == 4
    for images, tokens in batches:
        assert images.shape == (3, 3, 8, 8) and tokens.shape == (3, CTX)
        assert all(c.startswith("good ") for c in captions(tokens))
    assert (
        info.skipped() >= 3
    )  # bad.jpg, the .cls-only sample and the truncated jpeg, each seen at least once


def test_eval_loader_reads_once_and_counts_each_corrupt_sample(tmp_path):
    shard = _with_corrupt_members(tmp_path)
    info = build_val_data(cfg(val_data=shard, val_num_samples=9, batch_size=4), T.ToTensor(), fake_tokenizer)
    batches = list(info.dataloader)
    assert [len(t) for _, t in batches] == [4, 2]
    assert sorted(c for _, t in batches for c in captions(t)) == [f"good {i}" for i in range(6)]
    assert info.skipped() == 3


def test_epoch_arithmetic_with_workers_matches_openclip(tmp_path):
    shards = write_shards(tmp_path, [5, 5, 5, 5])
    info = build_train_data(cfg(train_data=shards, batch_size=3, workers=2), PREPROCESS, fake_tokenizer)
    # ceil(20/3)=7 batches -> 4 per worker -> 8 batches, 24 samples
    assert (info.num_batches, info.num_samples) == (8, 24)
    assert len(info.dataloader) == 8


def test_resampled_upsampling_factor_doubles_second_source(tmp_path):
    # one-sample shards: every draw is one sample, so 600 samples are 600 weighted draws
    a = write_shards(tmp_path / "a", [1, 1], prefix="a")
    b = write_shards(tmp_path / "b", [1, 1], prefix="b")
    c = cfg(
        train_data="{}::{}".format(*[f"{d}/{{00000..00001}}.tar" for d in (tmp_path / "a", tmp_path / "b")]),
        train_data_upsampling_factors="1::2",
        dataset_resampled=True,
        train_num_samples=600,
        batch_size=50,
    )
    assert len(a + b) == 4
    info = build_train_data(c, T.ToTensor(), fake_tokenizer)
    counts = Counter(cap[0] for _, t in info.dataloader for cap in captions(t))
    assert sum(counts.values()) == 600
    assert counts["b"] / counts["a"] == pytest.approx(2.0, rel=0.3)


def test_shards_without_captions_raise_instead_of_hanging(tmp_path):
    members = [(f"{i}.jpg", image_bytes(i, "JPEG")) for i in range(3)] + [
        (f"{i}.cls", b"1") for i in range(3)
    ]
    shard = write_tar(tmp_path / "00000.tar", members)
    with pytest.raises(ClipctlError, match=r"no usable samples .*\.txt caption.*\.cls"):
        validate_data_config(cfg(train_data=shard, train_num_samples=100, dataset_resampled=True))

    # the runtime guard (remote shards are not probed up front): resampling must stop, not spin forever
    stream = WdsStream(
        [shard], preprocess=T.ToTensor(), tokenizer=fake_tokenizer, batch_size=2, counter=SkipCounter(0),
        resampled=True, batches_per_worker=5,
    )  # fmt: skip
    outcome: list[BaseException | None] = []

    def consume():
        try:
            list(stream)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert outcome and isinstance(outcome[0], ClipctlError)
    assert "no usable samples" in str(outcome[0])


def test_worker_errors_reach_the_caller_as_one_line(tmp_path, monkeypatch):
    import gc

    # torch waits this long for a worker that raised to exit; keep the test quick
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.2)
    members = [(f"{i}.jpg", image_bytes(i, "JPEG")) for i in range(2)]
    shards = [write_tar(tmp_path / f"{s}.tar", members) for s in range(2)]
    stream = WdsStream(
        shards, preprocess=T.ToTensor(), tokenizer=fake_tokenizer, batch_size=2, counter=SkipCounter(1),
        batches_per_worker=1,
    )  # fmt: skip
    from clipctl.train.data_common import LoaderView

    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=1)
    with pytest.raises(ClipctlError) as excinfo:
        list(LoaderView(loader, 1, 2, lambda: 1))
    message = str(excinfo.value)
    del excinfo, loader
    gc.collect()
    assert "\n" not in message and message.startswith("no usable samples")


def _epoch(info, epoch):
    info.set_epoch(epoch)
    return [(images, captions(tokens)) for images, tokens in info.dataloader]


@pytest.mark.parametrize(("workers", "resampled"), [(0, False), (2, False), (2, True)])
def test_skip_batches_resumes_with_exactly_the_same_batches(tmp_path, small_buffer, workers, resampled):
    shards = write_shards(tmp_path, [6, 6, 6, 6])
    c = cfg(train_data=shards, batch_size=2, workers=workers, seed=3, dataset_resampled=resampled)
    full = build_train_data(c, PREPROCESS, fake_tokenizer, epoch=1)
    epoch1, epoch2 = _epoch(full, 1), _epoch(full, 2)
    assert len(epoch1) == 12
    assert [cap for _, caps in epoch1 for cap in caps] != [cap for _, caps in epoch2 for cap in caps]

    resumed = build_train_data(c, PREPROCESS, fake_tokenizer, epoch=1, skip_batches=5)
    assert resumed.start_batch(1) == 5 and len(resumed.dataloader) == 7
    again1, again2 = _epoch(resumed, 1), _epoch(resumed, 2)
    assert [caps for _, caps in again1] == [caps for _, caps in epoch1[5:]]
    for (a, _), (b, _) in zip(again1, epoch1[5:], strict=True):
        assert torch.equal(a, b)  # same augmentation, not just the same samples
    assert [caps for _, caps in again2] == [caps for _, caps in epoch2]
    assert len(resumed.dataloader) == 12
