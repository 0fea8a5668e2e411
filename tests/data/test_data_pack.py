"""`pack_dataset`: local images and captions into img2dataset-layout shards, deterministic and parallel."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipctl.data.pack import detect_separator, pack_dataset
from clipctl.errors import ClipctlError, RunFailure


def _image_bytes(fmt: str, seed: int, size=(20, 14)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def _make_folder(root: Path) -> Path:
    """Nested folder: 5 good pairs in four formats, one corrupt image, one image without a caption."""
    src = root / "src"
    (src / "b").mkdir(parents=True)
    files = {
        "a1.jpg": _image_bytes("JPEG", 1),
        "a2.png": _image_bytes("PNG", 2),
        "b/b1.webp": _image_bytes("WEBP", 3),
        "b/b2.bmp": _image_bytes("BMP", 4),
        "c1.JPEG": _image_bytes("JPEG", 5),
        "broken.jpg": b"\xff\xd8 not really a jpeg",
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
        (src / name).with_suffix(".txt").write_text(f"caption of {name}\n")
    (src / "lonely.png").write_bytes(_image_bytes("PNG", 6))  # no lonely.txt
    (src / "notes.md").write_text("not an image")
    return src


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _all_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_pack_folder_keeps_image_bytes_and_reports_skipped_samples(tmp_path):
    src = _make_folder(tmp_path)
    summary = pack_dataset(src, tmp_path / "out", samples_per_shard=4, processes=1)

    assert (summary.num_inputs, summary.num_written, summary.num_shards) == (7, 5, 2)
    reasons = dict(summary.skipped)
    assert set(reasons) == {"broken.jpg", "lonely.png"}
    assert "not a readable image" in reasons["broken.jpg"]
    assert "no caption file lonely.txt" in reasons["lonely.png"]
    with open(tmp_path / "out" / "pack_errors.csv") as f:
        assert [row["path"] for row in csv.DictReader(f)] == ["broken.jpg", "lonely.png"]

    sizes = json.loads((tmp_path / "out" / "sizes.json").read_text())
    assert sizes == {"00000.tar": 4, "00001.tar": 1}
    # Sorted relative paths: a1.jpg a2.png b/b1.webp b/b2.bmp | broken.jpg c1.JPEG lonely.png
    first = _tar_members(tmp_path / "out" / "00000.tar")
    assert first["000000.jpg"] == (src / "a1.jpg").read_bytes()
    assert first["000001.png"] == (src / "a2.png").read_bytes()
    assert first["000002.webp"] == (src / "b" / "b1.webp").read_bytes()
    bmp_as_png = Image.open(io.BytesIO(first["000003.png"]))
    assert bmp_as_png.format == "PNG"
    assert np.array_equal(np.asarray(bmp_as_png), np.asarray(Image.open(src / "b" / "b2.bmp")))
    meta = json.loads(first["000000.json"])
    assert meta["url"] == "a1.jpg" and meta["caption"] == "caption of a1.jpg"
    assert (meta["width"], meta["height"], meta["status"], meta["key"]) == (20, 14, "success", "000000")
    assert first["000000.txt"] == b"caption of a1.jpg"

    second = _tar_members(tmp_path / "out" / "00001.tar")
    assert sorted(second) == ["000011.jpg", "000011.json", "000011.txt"]
    rows = pq.read_table(tmp_path / "out" / "00001.parquet").to_pylist()
    assert [(r["url"], r["status"]) for r in rows] == [
        ("broken.jpg", "failed_to_resize"),
        ("c1.JPEG", "success"),
        ("lonely.png", "failed_to_download"),
    ]
    stats = json.loads((tmp_path / "out" / "00001_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failed_to_resize"], stats["failed_to_download"]) == (
        3,
        1,
        1,
        1,
    )


def test_pack_is_byte_identical_across_runs_and_process_counts(tmp_path):
    src = _make_folder(tmp_path)
    pack_dataset(src, tmp_path / "one", samples_per_shard=2, processes=1)
    pack_dataset(src, tmp_path / "two", samples_per_shard=2, processes=2)
    first, second = _all_files(tmp_path / "one"), _all_files(tmp_path / "two")
    assert sorted(first) == sorted(second)
    assert first == second
    with tarfile.open(tmp_path / "one" / "00000.tar") as tar:
        assert {(m.mtime, m.uname, m.mode) for m in tar.getmembers()} == {(946684800, "bigdata", 0o444)}


def test_pack_csv_with_detected_tab_separator_and_resizing(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(_image_bytes("PNG", i, size=(40, 20)))
    table = tmp_path / "train.csv"
    table.write_text("filepath\ttitle\n" + "".join(f"imgs/{i}.png\tshape number {i}\n" for i in range(3)))
    summary = pack_dataset(table, tmp_path / "out", image_size=16, resize_mode="center_crop", processes=1)
    assert summary.num_written == 3 and not summary.skipped
    members = _tar_members(tmp_path / "out" / "00000.tar")
    image = Image.open(io.BytesIO(members["000000000.jpg"]))
    assert (image.format, image.size) == ("JPEG", (16, 16))
    meta = json.loads(members["000000002.json"])
    assert meta["caption"] == "shape number 2"
    assert (meta["original_width"], meta["original_height"]) == (40, 20)


def test_pack_bad_sources_fail_with_one_clear_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipctlError, match="no images"):
        pack_dataset(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ClipctlError, match="no such file or folder"):
        pack_dataset(tmp_path / "absent", tmp_path / "out")
    table = tmp_path / "t.csv"
    table.write_text("path,text\nx.jpg,hello\n")
    with pytest.raises(ClipctlError, match="no column 'filepath'.*--img-key"):
        pack_dataset(table, tmp_path / "out")
    with pytest.raises(RunFailure, match="none of the 1 samples"):
        pack_dataset(table, tmp_path / "out", img_key="path", caption_key="text")


def test_separator_detection():
    assert detect_separator("filepath\ttitle\n", ".csv") == "\t"
    assert detect_separator("filepath,title\n", ".csv") == ","
    assert detect_separator("a,b\n", ".tsv") == "\t"
