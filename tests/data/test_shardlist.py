"""Shard specs: brace and '::' expansion, per-source factors, size files, missing/empty checks."""

from __future__ import annotations

import json

import pytest

from clipctl.data.shardlist import SIZES_FILE, check_shards_exist, expand_shard_spec, read_sizes
from clipctl.errors import ClipctlError


def test_brace_and_multi_source_expansion_counts_like_openclip():
    assert len(expand_shard_spec("a.tar")[0]) == 1
    assert len(expand_shard_spec("s/{000..009}.tar")[0]) == 10
    assert len(expand_shard_spec("s/{000..099}.tar")[0]) == 100
    shards, weights = expand_shard_spec("a.tar::b_{000..009}.tar")
    assert shards[0] == "a.tar" and shards[1:] == [f"b_{i:03d}.tar" for i in range(10)] and weights is None
    assert len(expand_shard_spec(["x/{0..9}.tar", "y/{0..9}.tar"])[0]) == 20


def test_factors_are_repeated_per_shard_of_their_source():
    shards, weights = expand_shard_spec("a/{0..2}.tar::b/{0..1}.tar", "1::2.5")
    assert shards == ["a/0.tar", "a/1.tar", "a/2.tar", "b/0.tar", "b/1.tar"]
    assert weights == [1.0, 1.0, 1.0, 2.5, 2.5]


@pytest.mark.parametrize("factors", ["1", "1::2::3", "1::x"])
def test_factor_count_or_format_mismatch_is_a_clear_error(factors):
    with pytest.raises(ClipctlError, match="factor|numbers"):
        expand_shard_spec("a.tar::b.tar", factors)


def test_empty_sources_and_empty_folders_are_errors(tmp_path):
    with pytest.raises(ClipctlError, match="empty source"):
        expand_shard_spec("a.tar::")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipctlError, match="expands to no shards"):
        expand_shard_spec(str(tmp_path / "empty"))


def test_a_folder_source_means_its_tar_files(tmp_path):
    for name in ("00001.tar", "00000.tar", "00000.parquet"):
        (tmp_path / name).write_bytes(b"")
    shards, _ = expand_shard_spec(str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in shards] == ["00000.tar", "00001.tar"]


def test_a_quoted_glob_means_the_files_it_matches_sorted(tmp_path):
    for folder in ("train", "extra"):
        (tmp_path / folder).mkdir()
        for name in ("00001.tar", "00000.tar", "sizes.json"):
            (tmp_path / folder / name).write_bytes(b"")
    shards, _ = expand_shard_spec(str(tmp_path / "train" / "*.tar"))
    assert shards == [str(tmp_path / "train" / f"0000{i}.tar") for i in (0, 1)]
    both, _ = expand_shard_spec(
        str(tmp_path / "{train,extra}" / "0000?.tar") + "::" + str(tmp_path / "x.tar")
    )
    assert [p.split("/")[-2:] for p in both[:4]] == [["train", "00000.tar"], ["train", "00001.tar"]] + [
        ["extra", "00000.tar"],
        ["extra", "00001.tar"],
    ]
    assert both[4] == str(tmp_path / "x.tar")
    with pytest.raises(ClipctlError, match="glob that matches no file"):
        expand_shard_spec(str(tmp_path / "train" / "*.tgz"))


def test_missing_shard_is_named_and_urls_are_not_checked(tmp_path):
    (tmp_path / "0.tar").write_bytes(b"")
    with pytest.raises(ClipctlError, match=r"shard not found: .*1\.tar \(and 1 more of 3\)"):
        check_shards_exist([str(tmp_path / "0.tar"), str(tmp_path / "1.tar"), str(tmp_path / "2.tar")])
    check_shards_exist(
        [str(tmp_path / "0.tar"), "pipe:cat x.tar", "https://example.com/a.tar", "s3://b/a.tar"]
    )
    with pytest.raises(ClipctlError, match="no shards"):
        check_shards_exist([])


def test_read_sizes_sums_sizes_json_per_folder_and_len_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    (a / SIZES_FILE).write_text(json.dumps({"0.tar": 3, "1.tar": 4, "2.tar": 100}))
    (b / "__len__").write_text("7\n")
    assert read_sizes([str(a / "0.tar"), str(a / "1.tar")]) == 7
    assert read_sizes([str(a / "0.tar"), str(b / "9.tar")]) == 10
    assert read_sizes([str(a / "0.tar"), str(a / "5.tar")]) is None  # a shard sizes.json does not list
    assert read_sizes([str(c / "0.tar")]) is None
    assert read_sizes(["pipe:cat a.tar"]) is None
    (c / SIZES_FILE).write_text("not json")
    with pytest.raises(ClipctlError, match="cannot read"):
        read_sizes([str(c / "0.tar")])
