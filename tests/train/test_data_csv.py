"""CSV/TSV and synthetic loaders: separator/column diagnostics, paths relative to the CSV, corrupt images
replaced (train) or dropped (eval) and counted, deterministic shuffling and exact mid-epoch resume."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from clipctl.errors import ClipctlError
from clipctl.train.data import SyntheticDataset, build_train_data, build_val_data, validate_data_config

CTX = 16
PREPROCESS = T.Compose([T.RandomResizedCrop(8, scale=(0.3, 1.0)), T.ToTensor()])


def fake_tokenizer(texts: list[str]) -> torch.Tensor:
    out = torch.zeros(len(texts), CTX, dtype=torch.long)
    for i, t in enumerate(texts):
        data = t.encode()[:CTX]
        out[i, : len(data)] = torch.tensor(list(data))
    return out


def captions(tokens: torch.Tensor) -> list[str]:
    return [bytes(int(v) for v in row if v).decode() for row in tokens]


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


def write_csv(
    folder: Path, n: int, sep: str = "\t", header=("filepath", "title"), corrupt=(), name="train.csv"
) -> str:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = [sep.join(header)]
    for i in range(n):
        path = folder / "img" / f"{i}.png"
        if i in corrupt:
            path.write_bytes(b"not a png")
        else:
            Image.new("RGB", (10, 10), (i * 7 % 256, 20, 30)).save(path)
        lines.append(sep.join([f"img/{i}.png", f"row {i}"]))
    csv_path = folder / name
    csv_path.write_text("\n".join(lines) + "\n")
    return str(csv_path)


def test_wrong_separator_is_detected_and_named(tmp_path):
    path = write_csv(tmp_path, 3, sep=",")
    with pytest.raises(ClipctlError) as excinfo:
        validate_data_config(cfg(train_data=path))
    assert str(excinfo.value) == (
        f"CSV {path} has no column 'filepath' with separator '\\t'; it looks comma-separated with columns "
        "['filepath', 'title']: pass --csv-separator ','"
    )


def test_wrong_column_names_suggest_the_columns_that_exist(tmp_path):
    path = write_csv(tmp_path, 3, sep=",", header=("path", "caption"))
    with pytest.raises(
        ClipctlError,
        match=r"its columns are \['path', 'caption'\]: pass --csv-img-key path --csv-caption-key caption",
    ):
        validate_data_config(cfg(train_data=path, csv_separator=","))
    with pytest.raises(
        ClipctlError,
        match=r"looks comma-separated .* pass --csv-separator ',' --csv-img-key path --csv-caption-key caption",
    ):
        validate_data_config(cfg(train_data=path))


def test_missing_csv_and_missing_images_are_clear_errors(tmp_path):
    with pytest.raises(ClipctlError, match="CSV file not found"):
        validate_data_config(cfg(train_data=str(tmp_path / "nope.csv")))
    (tmp_path / "t.tsv").write_text("filepath\ttitle\nmissing/a.png\tx\nmissing/b.png\ty\n")
    with pytest.raises(
        ClipctlError,
        match="none of the first 2 image files exist .*relative paths are read from the CSV's folder",
    ):
        validate_data_config(cfg(train_data=str(tmp_path / "t.tsv"), batch_size=1))


def test_batch_larger_than_csv_is_an_error(tmp_path):
    path = write_csv(tmp_path, 5)
    with pytest.raises(
        ClipctlError, match="has 5 rows, fewer than one batch \\(batch size 4 x 2 processes\\)"
    ):
        validate_data_config(cfg(train_data=path), world_size=2)


def test_train_loader_replaces_corrupt_images_and_keeps_batches_full(tmp_path):
    path = write_csv(tmp_path, 10, corrupt={2, 7})
    info = build_train_data(cfg(train_data=path, batch_size=3), PREPROCESS, fake_tokenizer)
    assert (info.num_batches, info.num_samples) == (3, 9)
    batches = list(info.dataloader)
    assert [len(t) for _, t in batches] == [3, 3, 3]
    seen = [c for _, t in batches for c in captions(t)]
    assert "row 2" not in seen and "row 7" not in seen
    assert info.skipped() >= 1  # 9 of 10 rows used: at least one corrupt row was drawn and replaced


def test_eval_loader_drops_corrupt_images(tmp_path):
    path = write_csv(tmp_path, 6, corrupt={1})
    info = build_val_data(cfg(val_data=path, batch_size=4), T.ToTensor(), fake_tokenizer)
    batches = list(info.dataloader)
    assert [len(t) for _, t in batches] == [3, 2]
    assert [c for _, t in batches for c in captions(t)] == ["row 0", "row 2", "row 3", "row 4", "row 5"]
    assert info.skipped() == 1


def test_ranks_get_disjoint_rows_and_epochs_reshuffle(tmp_path):
    path = write_csv(tmp_path, 12)
    c = cfg(train_data=path, batch_size=2, seed=1)
    per_rank = [build_train_data(c, T.ToTensor(), fake_tokenizer, rank=r, world_size=2) for r in range(2)]
    rows = [[x for _, t in info.dataloader for x in captions(t)] for info in per_rank]
    assert len(rows[0]) == len(rows[1]) == 6 and not set(rows[0]) & set(rows[1])
    per_rank[0].set_epoch(1)
    assert [x for _, t in per_rank[0].dataloader for x in captions(t)] != rows[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_batches_resumes_with_exactly_the_same_batches(tmp_path, workers):
    path = write_csv(tmp_path, 14, corrupt={4})
    c = cfg(train_data=path, batch_size=2, workers=workers, seed=5)
    full = build_train_data(c, PREPROCESS, fake_tokenizer, epoch=2)
    expected = list(full.dataloader)
    resumed = build_train_data(c, PREPROCESS, fake_tokenizer, epoch=2, skip_batches=4)
    assert len(resumed.dataloader) == 3 and resumed.start_batch(2) == 4
    got = list(resumed.dataloader)
    assert len(got) == 3
    for (img_a, tok_a), (img_b, tok_b) in zip(got, expected[4:], strict=True):
        assert torch.equal(tok_a, tok_b) and torch.equal(img_a, img_b)
    resumed.set_epoch(3)
    full.set_epoch(3)
    assert [captions(t) for _, t in resumed.dataloader] == [captions(t) for _, t in full.dataloader]


def test_synthetic_data_is_deterministic_and_sized_from_the_transform():
    ds = SyntheticDataset(
        5, T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor()]), fake_tokenizer, seed=3
    )
    assert ds.items.image_size == (16, 16)
    a, b = ds[2], SyntheticDataset(5, T.ToTensor(), fake_tokenizer, image_size=16, seed=3)[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert captions(a[1][None])[0].startswith("a photo of a")
    info = build_train_data(cfg(dataset_type="synthetic", train_num_samples=8), T.ToTensor(), fake_tokenizer)
    assert info.num_batches == 2 and [img.shape[0] for img, _ in info.dataloader] == [4, 4]


def test_a_typed_backslash_t_separator_means_tab(tmp_path):
    path = write_csv(tmp_path, 4, sep="\t")
    info = build_train_data(
        cfg(train_data=path, csv_separator="\\t", batch_size=2), T.ToTensor(), fake_tokenizer
    )
    assert info.num_batches == 2
