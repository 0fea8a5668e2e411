"""Class labels in training batches: a CSV label column, ``.cls`` members of shards, and class folders turned
into captions by templates (``--dataset-type imagefolder``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from clipctl.config.run import resolve_run_config
from clipctl.errors import ClipctlError
from clipctl.train.data import build_train_data, validate_data_config
from tests.train.test_data_csv import PREPROCESS, captions, cfg, fake_tokenizer
from tests.train.test_data_wds import image_bytes, write_tar


def _labelled_csv(folder: Path, labels: list[str]) -> str:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = ["filepath\ttitle\tlabel"]
    for i, label in enumerate(labels):
        Image.new("RGB", (10, 10), (i * 7 % 256, 20, 30)).save(folder / "img" / f"{i}.png")
        lines.append(f"img/{i}.png\trow {i}\t{label}")
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "train.csv")


def _batches(info, epoch: int = 0) -> list[tuple]:
    info.set_epoch(epoch)
    return [tuple(batch) for batch in info.dataloader]


def test_a_csv_label_column_gives_batches_of_images_tokens_and_labels(tmp_path):
    names = ["cat", "dog", "cat", "", "bird", "dog", " cat ", ""]
    path = _labelled_csv(tmp_path, names)
    info = build_train_data(
        cfg(train_data=path, csv_label_key="label", multi_positive=True), PREPROCESS, fake_tokenizer
    )
    label_of_row = {}
    for images, tokens, labels in _batches(info):
        assert labels.dtype == torch.long and len(labels) == len(images) == 4
        for caption, label in zip(captions(tokens), labels.tolist(), strict=True):
            label_of_row[int(caption.split()[1])] = label
    assert len(label_of_row) == 8
    assert label_of_row[0] == label_of_row[2] == label_of_row[6] >= 0  # equal texts (stripped): equal ids
    assert label_of_row[1] == label_of_row[5] != label_of_row[0]
    assert label_of_row[3] == label_of_row[7] == -1  # empty cells: no label
    # without the key the batches stay (images, tokens)
    plain = build_train_data(cfg(train_data=path), PREPROCESS, fake_tokenizer)
    assert all(len(batch) == 2 for batch in _batches(plain))


def test_label_key_mistakes_are_one_line_errors(tmp_path):
    path = _labelled_csv(tmp_path, ["a", "b", "a", "b"])
    with pytest.raises(ClipctlError, match="has no column 'class'.*--csv-label-key label"):
        validate_data_config(cfg(train_data=path, csv_label_key="class"))
    with pytest.raises(
        ClipctlError, match="--csv-label-key reads a CSV column, but --train-data is synthetic"
    ):
        validate_data_config(cfg(dataset_type="synthetic", train_num_samples=8, csv_label_key="label"))
    with pytest.raises(ClipctlError, match="--csv-label-key only takes effect with --multi-positive"):
        resolve_run_config(None, {"train_data": path, "csv_label_key": "label"}, [])
    with pytest.raises(ClipctlError, match="--templates .* goes with --dataset-type imagefolder"):
        resolve_run_config(None, {"train_data": path, "templates": "simple"}, [])


def test_shards_under_multi_positive_carry_cls_labels_and_skip_bad_ones(tmp_path):
    members = []
    cls = {0: b"3", 1: b" 7\n", 2: None, 3: b"three", 4: b"3", 5: b"-2", 6: b"1", 7: b"1", 8: b"0", 9: b"2"}
    for i, label in cls.items():
        members += [(f"{i:04d}.png", image_bytes(i)), (f"{i:04d}.txt", f"cap {i}".encode())]
        if label is not None:
            members.append((f"{i:04d}.cls", label))
    shard = write_tar(tmp_path / "00000.tar", members)
    # three passes over the shard: every usable sample shows up, whatever the shuffle
    c = cfg(train_data=shard, train_num_samples=24, batch_size=4, multi_positive=True)
    info = build_train_data(c, PREPROCESS, fake_tokenizer)
    seen = {}
    for _, tokens, labels in _batches(info):
        seen.update(zip((int(c.split()[1]) for c in captions(tokens)), labels.tolist(), strict=True))
    assert seen == {0: 3, 1: 7, 2: -1, 4: 3, 6: 1, 7: 1, 8: 0, 9: 2}  # 3 and 5 are not class indices
    assert info.skipped() >= 2
    plain = build_train_data(
        cfg(train_data=shard, train_num_samples=8, batch_size=4), PREPROCESS, fake_tokenizer
    )
    assert all(len(batch) == 2 for batch in _batches(plain))


def _class_folders(root: Path, counts: dict[str, int]) -> str:
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (10, 10), (c * 60, i * 10, 0)).save(root / name / f"{i}.png")
    return str(root)


def _folder_cfg(root: str, tmp_path: Path, **kw):
    templates = tmp_path / "templates.txt"
    templates.write_text("a {c}\nthe {c}\nsome {}\n")
    return cfg(train_data=root, dataset_type="imagefolder", templates=str(templates), **kw)


def test_class_folders_become_template_captions_with_class_labels(tmp_path):
    root = _class_folders(tmp_path / "train", {"cat": 6, "dog": 6})
    names = tmp_path / "names.txt"
    names.write_text("small cat\nbig dog\n")
    c = _folder_cfg(root, tmp_path, classnames=str(names), batch_size=4, seed=1)
    info = build_train_data(c, PREPROCESS, fake_tokenizer)
    assert info.num_batches == 3
    epochs = []
    for epoch in range(3):
        pairs = []
        for _, tokens, labels in _batches(info, epoch):
            pairs += list(zip(captions(tokens), labels.tolist(), strict=True))
        epochs.append(pairs)
        for caption, label in pairs:
            template, _, name = caption.partition(" ")
            assert template in ("a", "the", "some") and name == ["small cat", "big dog"][label]
    templates_used = {caption.split()[0] for pairs in epochs for caption, _ in pairs}
    assert templates_used == {"a", "the", "some"}
    assert epochs[0] != epochs[1]  # a new draw of templates (and order) each epoch
    again = build_train_data(c, PREPROCESS, fake_tokenizer)
    pairs_again = [list(zip(captions(t), ids.tolist(), strict=True)) for _, t, ids in _batches(again, 1)]
    assert pairs_again == [epochs[1][i : i + 4] for i in range(0, 12, 4)]


def test_an_imagefolder_epoch_resumes_mid_way_with_the_same_captions_and_crops(tmp_path):
    root = _class_folders(tmp_path / "train", {"a": 5, "b": 5, "c": 4})
    c = _folder_cfg(root, tmp_path, batch_size=2, seed=4)
    full = _batches(build_train_data(c, PREPROCESS, fake_tokenizer, epoch=2), 2)
    resumed = _batches(build_train_data(c, PREPROCESS, fake_tokenizer, epoch=2, skip_batches=3), 2)
    assert len(resumed) == len(full) - 3
    for got, want in zip(resumed, full[3:], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_imagefolder_mistakes_are_one_line_errors(tmp_path):
    root = _class_folders(tmp_path / "train", {"cat": 3, "dog": 3})
    names = tmp_path / "names.txt"
    names.write_text("cat\n")
    with pytest.raises(ClipctlError, match="has 1 names but --train-data .* has 2 class folders"):
        validate_data_config(_folder_cfg(root, tmp_path, classnames=str(names)))
    with pytest.raises(ClipctlError, match="6 images, fewer than one batch"):
        validate_data_config(_folder_cfg(root, tmp_path, batch_size=8))
    with pytest.raises(ClipctlError, match="neither 'openai', 'simple' nor an existing file"):
        validate_data_config(cfg(train_data=root, dataset_type="imagefolder", templates="fancy"))
    with pytest.raises(ClipctlError, match="sub-folders and no .tar shards: .* --dataset-type imagefolder"):
        validate_data_config(cfg(train_data=root))  # class folders without the dataset type
    with pytest.raises(ClipctlError, match="no such folder"):
        validate_data_config(cfg(train_data=str(tmp_path / "nope"), dataset_type="imagefolder"))
