"""The shard writer: img2dataset's names, keys and side files; readable by webdataset; never half-written."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipctl.data.shards import Sample, ShardWriter, sample_key, shard_name, sizes_from_stats, write_sizes


def test_keys_and_names_follow_img2dataset():
    # Values produced by img2dataset 1.47's compute_key(index, shard_id, ceil(log10(n)), 5).
    assert sample_key(0, 0, 3) == "000000"
    assert sample_key(2, 1, 3) == "000021"
    assert sample_key(12, 7, 10_000) == "000120007"
    assert sample_key(3, 0, 1) == "00003"
    assert shard_name(42) == "00042"


def test_writer_output_reads_back_with_webdataset(tmp_path):
    import webdataset as wds

    with ShardWriter(tmp_path, 3, samples_per_shard=100, extra_columns={"label": pa.int32()}) as writer:
        writer.add(
            Sample(0, "a cat", url="cat.jpg", image=b"JPEGDATA", width=4, height=3, extra={"label": 7})
        )
        writer.add(Sample(1, "a dog", url="dog.jpg", status="failed_to_download", error_message="404"))
        writer.add(Sample(2, "a bird", url="bird.png", image=b"PNGDATA", image_ext="png", width=2, height=2))

    samples = list(wds.WebDataset(str(tmp_path / "00003.tar"), shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in samples] == ["0000300", "0000302"]
    assert samples[0]["jpg"] == b"JPEGDATA" and samples[0]["txt"] == b"a cat"
    assert samples[1]["png"] == b"PNGDATA"
    meta = json.loads(samples[0]["json"])
    assert list(meta)[:4] == ["label", "caption", "url", "key"]
    assert (meta["label"], meta["key"], meta["status"], meta["width"]) == (7, "0000300", "success", 4)
    assert len(meta["sha256"]) == 64

    table = pq.read_table(tmp_path / "00003.parquet")
    assert table.column_names[:3] == ["label", "caption", "url"]
    assert table.column("status").to_pylist() == ["success", "failed_to_download", "success"]
    assert table.column("error_message").to_pylist() == [None, "404", None]
    stats = json.loads((tmp_path / "00003_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failed_to_download"]) == (3, 2, 1)
    assert stats["status_dict"] == {"success": 2, "404": 1}
    assert sizes_from_stats(tmp_path) == {"00003.tar": 2}


def test_a_failed_shard_leaves_nothing_under_the_final_names(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, 0, samples_per_shard=10) as writer:
            writer.add(Sample(0, "x", image=b"data"))
            raise RuntimeError("crash mid-shard")
    assert list(tmp_path.iterdir()) == []


def test_sizes_json_is_sorted_and_written_atomically(tmp_path):
    path = write_sizes(tmp_path, {"00001.tar": 5, "00000.tar": 7})
    assert path.name == "sizes.json"
    assert list(json.loads(path.read_text()).items()) == [("00000.tar", 7), ("00001.tar", 5)]
    assert [p.name for p in tmp_path.iterdir()] == ["sizes.json"]
