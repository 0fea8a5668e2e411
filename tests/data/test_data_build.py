"""`build_shards` runs img2dataset for real against a local HTTP server (good images, 404s, corrupt files)."""

from __future__ import annotations

import json
import tarfile

import pyarrow.parquet as pq
import pytest

from clipctl.data.build import BuildInterrupted, BuildOptions, build_shards, inspect_url_list
from clipctl.errors import ClipctlError
from tests.data.image_server import serve_directory, write_test_images


def _write_csv(path, rows):
    path.write_text("url,caption\n" + "".join(f"{url},{caption}\n" for url, caption in rows))
    return path


def test_build_counts_successes_404s_and_corrupt_files_from_img2dataset_stats(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    good, corrupt = write_test_images(tmp_path / "www", n_good=6, n_corrupt=2)
    with serve_directory(tmp_path / "www") as base:
        rows = [(f"{base}/{name}", f"picture {i}") for i, name in enumerate(good)]
        rows += [(f"{base}/missing_{i}.jpg", "gone") for i in range(2)]
        rows += [(f"{base}/{name}", "broken") for name in corrupt]
        url_list = _write_csv(tmp_path / "urls.csv", rows)
        summary = build_shards(
            url_list,
            tmp_path / "shards",
            BuildOptions(
                image_size=16,
                processes=1,
                threads=3,
                samples_per_shard=4,
                timeout=5,
                img2dataset_output="null",
            ),
        )

    assert (summary.count, summary.successes) == (10, 6)
    assert (summary.failed_to_download, summary.failed_to_resize) == (2, 2)
    assert summary.num_shards == 3
    reasons = dict(summary.reasons)
    assert sum(n for message, n in reasons.items() if "404" in message) == 2
    assert sum(reasons.values()) == 4

    out = tmp_path / "shards"
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"00000.tar": 4, "00001.tar": 2, "00002.tar": 0}
    with tarfile.open(out / "00000.tar") as tar:
        names = tar.getnames()
    assert sorted(names) == [f"00000{i}.{ext}" for i in range(4) for ext in ("jpg", "json", "txt")]
    captions = pq.read_table(out / "00000.parquet").column("caption").to_pylist()
    assert sorted(captions) == ["picture 0", "picture 1", "picture 2", "picture 3"]
    assert not (out / "_tmp").exists()

    # Resuming a finished folder downloads nothing more; img2dataset must not trip over our sizes.json.
    (out / "00001_stats.json").unlink()
    (out / "00001.tar").unlink()
    with serve_directory(tmp_path / "www") as base:
        _write_csv(url_list, [(url.replace(url.split("/")[2], base[7:]), c) for url, c in rows])
        again = build_shards(
            url_list,
            out,
            BuildOptions(
                incremental=True,
                image_size=16,
                threads=3,
                samples_per_shard=4,
                img2dataset_output="null",
            ),
        )
    assert (again.count, again.successes, again.num_shards) == (10, 6, 3)
    assert json.loads((out / "sizes.json").read_text()) == sizes


def test_build_reports_ctrl_c_instead_of_exiting_zero(tmp_path, monkeypatch):
    import img2dataset

    def interrupted(**kwargs):
        raise SystemExit(0)  # what img2dataset's SIGINT handler does

    monkeypatch.setattr(img2dataset, "download", interrupted)
    url_list = tmp_path / "urls.txt"
    url_list.write_text("http://127.0.0.1:9/a.jpg\n")
    with pytest.raises(BuildInterrupted, match="--incremental"):
        build_shards(url_list, tmp_path / "shards", BuildOptions(img2dataset_output="null"))


def test_url_list_checks_name_the_missing_column_before_downloading(tmp_path):
    csv = tmp_path / "urls.csv"
    csv.write_text("link,text\nhttp://x/a.jpg,a\n")
    with pytest.raises(ClipctlError, match="no URL column 'url'.*'link'"):
        inspect_url_list(csv)
    with pytest.raises(ClipctlError, match="no caption column 'caption'"):
        inspect_url_list(csv, url_col="link", caption_col="caption")
    info = inspect_url_list(csv, url_col="link")
    assert (info.input_format, info.caption_col, info.num_rows) == ("csv", None, 1)
    with pytest.raises(ClipctlError, match="no such URL list"):
        inspect_url_list(tmp_path / "absent.parquet")
    with pytest.raises(ClipctlError, match="cannot tell the format"):
        inspect_url_list(csv.rename(tmp_path / "urls.xlsx"))


def test_build_refuses_a_non_empty_folder_without_incremental_or_overwrite(tmp_path):
    url_list = tmp_path / "urls.txt"
    url_list.write_text("http://127.0.0.1:9/a.jpg\n")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "00000.tar").write_bytes(b"")
    with pytest.raises(ClipctlError, match="--incremental"):
        build_shards(url_list, tmp_path / "shards")
    (tmp_path / "shards" / "notes.md").write_text("mine")
    with pytest.raises(ClipctlError, match="did not write.*notes.md"):
        build_shards(url_list, tmp_path / "shards", BuildOptions(overwrite=True))
