"""`synthesize_dataset`: deterministic, balanced shapes data in img2dataset layout plus a zero-shot split."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipctl.data.synth import synthesize_dataset
from clipctl.data.synth_shapes import COLOURS, SHAPE_SYNONYMS, SHAPES
from clipctl.errors import ClipctlError

SMALL = {"num_train": 70, "num_heldout_per_class": 2, "image_size": 32, "samples_per_shard": 32}


def _all_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "shapes"
    return out, synthesize_dataset(out, seed=3, **SMALL)


def test_same_seed_gives_byte_identical_output_and_another_seed_does_not(dataset, tmp_path):
    out, _ = dataset
    synthesize_dataset(tmp_path / "again", seed=3, **SMALL)
    synthesize_dataset(tmp_path / "other", seed=4, **SMALL)
    first = _all_files(out)
    assert first == _all_files(tmp_path / "again")
    other = _all_files(tmp_path / "other")
    assert sorted(other) == sorted(first)
    assert other["00000.tar"] != first["00000.tar"]


def test_layout_classes_are_balanced_and_captions_name_colour_and_shape(dataset):
    out, summary = dataset
    assert len(summary.classnames) == len(COLOURS) * len(SHAPES) >= 32
    assert summary.num_shards == 3
    assert json.loads((out / "sizes.json").read_text()) == {"00000.tar": 32, "00001.tar": 32, "00002.tar": 6}
    labels = Counter()
    for shard in ("00000", "00001", "00002"):
        labels.update(pq.read_table(out / f"{shard}.parquet").column("classname").to_pylist())
    assert sum(labels.values()) == 70
    assert set(labels) == set(summary.classnames)
    assert max(labels.values()) - min(labels.values()) <= 1
    assert labels == Counter(summary.class_counts)

    with tarfile.open(out / "00000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    keys = sorted({name.split(".")[0] for name in members})
    assert len(keys) == 32 and keys[0] == "0000000"
    for key in keys:
        meta = json.loads(members[f"{key}.json"])
        caption = members[f"{key}.txt"].decode()
        colour, shape = meta["classname"].split()
        assert colour in caption.split()
        assert any(word in caption for word in SHAPE_SYNONYMS[shape]), caption
        image = Image.open(io.BytesIO(members[f"{key}.jpg"]))
        assert (image.format, image.size) == ("JPEG", (32, 32))
    assert len({members[f"{k}.txt"] for k in keys}) > 10  # varied phrasings


def test_heldout_split_is_an_imagefolder_in_classnames_order(dataset):
    out, summary = dataset
    folders = sorted(e.name for e in os.scandir(out / "heldout") if e.is_dir())
    classnames = (out / "classnames.txt").read_text().splitlines()
    assert classnames == summary.classnames
    assert [f.replace("_", " ") for f in folders] == classnames
    for folder in folders:
        images = sorted((out / "heldout" / folder).iterdir())
        assert [p.name for p in images] == ["0000.png", "0001.png"]
    templates = (out / "templates.txt").read_text().splitlines()
    assert templates and all("{c}" in t for t in templates)


def test_existing_folder_is_reused_refused_or_overwritten(dataset, tmp_path):
    out, _ = dataset
    assert synthesize_dataset(out, seed=3, **SMALL).reused
    with pytest.raises(ClipctlError, match="--overwrite"):
        synthesize_dataset(out, seed=5, **SMALL)

    target = tmp_path / "mixed"
    target.mkdir()
    (target / "thesis.tex").write_text("do not delete")
    with pytest.raises(ClipctlError, match="did not write.*thesis.tex"):
        synthesize_dataset(target, seed=0, overwrite=True, **SMALL)
    assert (target / "thesis.tex").exists()

    fresh = tmp_path / "fresh"
    synthesize_dataset(fresh, seed=0, **SMALL)
    summary = synthesize_dataset(fresh, seed=1, overwrite=True, **{**SMALL, "num_train": 10})
    assert not summary.reused and summary.num_shards == 1
    assert sorted(p.name for p in fresh.glob("*.tar")) == ["00000.tar"]


def test_too_little_disk_is_reported_before_anything_is_written(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000)
    )
    with pytest.raises(ClipctlError, match="not enough disk space"):
        synthesize_dataset(tmp_path / "out", **SMALL)
    assert not (tmp_path / "out").exists()


def test_bad_sizes_are_rejected(tmp_path):
    with pytest.raises(ClipctlError, match="--num-train"):
        synthesize_dataset(tmp_path / "out", num_train=0)
    with pytest.raises(ClipctlError, match="--image-size"):
        synthesize_dataset(tmp_path / "out", image_size=4)
