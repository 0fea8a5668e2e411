"""`inspect_shards`: counts, keys, examples, and every kind of damage it should name."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from clipctl.data.inspect_shards import inspect_shards
from clipctl.data.shards import Sample, ShardWriter, sizes_from_stats, write_sizes
from clipctl.errors import ClipctlError


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), seed * 20, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _write_shards(folder, corrupt_image: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    for shard_id in range(2):
        with ShardWriter(folder, shard_id, samples_per_shard=10) as writer:
            for i in range(3):
                data = b"garbage, not a jpeg" if corrupt_image and (shard_id, i) == (1, 2) else _jpeg(i)
                writer.add(Sample(i, f"caption {shard_id}-{i}", image=data, width=8, height=8))
    write_sizes(folder, sizes_from_stats(folder))
    return folder


def test_healthy_shards_report_counts_keys_and_examples(tmp_path):
    folder = _write_shards(tmp_path / "shards")
    report = inspect_shards(str(folder), check_images=True, max_examples=2)
    assert [s.samples for s in report.shards] == [3, 3]
    assert report.num_samples == 6
    assert report.extensions == {"jpg": 6, "json": 6, "txt": 6}
    assert report.examples == [("000000", "caption 0-0"), ("000001", "caption 0-1")]
    assert report.problems == [] and report.notes == []
    assert [s.sizes_json for s in report.shards] == [3, 3]
    brace = inspect_shards(str(folder / "{00000..00001}.tar"))
    assert brace.num_samples == 6 and not brace.checked_images
    json.dumps(report.to_json())  # the --json output is plain JSON


def test_corrupt_image_truncated_tar_and_wrong_sizes_are_all_named(tmp_path):
    folder = _write_shards(tmp_path / "shards", corrupt_image=True)
    without_check = inspect_shards(str(folder))
    assert without_check.problems == []

    report = inspect_shards(str(folder), check_images=True)
    assert report.shards[1].num_unreadable == 1
    assert report.shards[1].unreadable[0][0] == "000012.jpg"
    assert any("1 unreadable" in p for p in report.problems)

    data = (folder / "00000.tar").read_bytes()
    (folder / "00000.tar").write_bytes(data[: len(data) // 2])
    (folder / "sizes.json").write_text(json.dumps({"00000.tar": 3, "00001.tar": 5}))
    report = inspect_shards(str(folder))
    first = report.shards[0]
    assert first.error is not None and first.samples < 3
    problems = "\n".join(report.problems)
    assert "00000.tar: cannot be read to the end" in problems
    assert "00001.tar: sizes.json says 5 samples, the tar holds 3" in problems
    assert "00000.tar: its _stats.json counts 3 successes" in problems


def test_missing_sizes_json_is_a_note_and_missing_shards_an_error(tmp_path):
    folder = _write_shards(tmp_path / "shards")
    (folder / "sizes.json").unlink()
    report = inspect_shards(str(folder))
    assert report.problems == []
    assert report.notes and "sizes.json" in report.notes[0]
    with pytest.raises(ClipctlError, match="shard not found: .*00002.tar"):
        inspect_shards(str(folder / "{00000..00002}.tar"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipctlError, match="no shards"):
        inspect_shards(str(tmp_path / "empty"))
