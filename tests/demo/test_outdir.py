"""The demo's output folder: same run re-used, different run refused unless --overwrite, foreign files never
touched, and the disk checked before anything is written."""

import shutil
from collections import namedtuple

import pytest

from clipctl.demo import outdir
from clipctl.demo.outdir import prepare_demo_dir, write_manifest
from clipctl.errors import ClipctlError

PARAMS = {"version": 1, "seed": 0, "recipe": "demo_quick", "num_train": 10}


def _previous_demo(folder, parameters=PARAMS):
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "00000.tar").write_bytes(b"x")
    (folder / "runs" / "demo").mkdir(parents=True)
    (folder / "zeroshot.json").write_text("{}")
    (folder / "heldout_embeddings.parquet").write_bytes(b"x")
    write_manifest(folder, {"parameters": parameters, "status": "done"})


def test_missing_or_empty_folder_is_fine(tmp_path):
    assert prepare_demo_dir(tmp_path / "new", PARAMS, overwrite=False) is False
    (tmp_path / "empty").mkdir()
    assert prepare_demo_dir(tmp_path / "empty", PARAMS, overwrite=False) is False


def test_different_run_is_refused_without_overwrite(tmp_path):
    _previous_demo(tmp_path, {**PARAMS, "seed": 1})
    with pytest.raises(ClipctlError, match="different demo run.*--overwrite"):
        prepare_demo_dir(tmp_path, PARAMS, overwrite=False)
    assert (tmp_path / "data" / "00000.tar").exists()  # nothing deleted


def test_different_run_is_replaced_with_overwrite(tmp_path):
    _previous_demo(tmp_path, {**PARAMS, "seed": 1})
    assert prepare_demo_dir(tmp_path, PARAMS, overwrite=True) is False
    assert list(tmp_path.iterdir()) == []


def test_same_run_keeps_its_data_and_clears_the_rest(tmp_path):
    _previous_demo(tmp_path)
    assert prepare_demo_dir(tmp_path, PARAMS, overwrite=False) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (tmp_path / "data" / "00000.tar").exists()


def test_unfinished_unknown_run_needs_overwrite(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(ClipctlError, match="unfinished or unknown demo run"):
        prepare_demo_dir(tmp_path, PARAMS, overwrite=False)


def test_foreign_files_are_never_deleted(tmp_path):
    _previous_demo(tmp_path)
    (tmp_path / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(ClipctlError, match="did not write.*thesis.tex"):
            prepare_demo_dir(tmp_path, PARAMS, overwrite=overwrite)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_side_files_of_our_outputs_count_as_ours(tmp_path):
    for name in (
        "heldout_embeddings.parquet.parts",
        "heldout_embeddings.parquet.errors.csv",
        ".demo.json.tmp",
    ):
        (tmp_path / name).write_text("")
    write_manifest(tmp_path, {"parameters": PARAMS, "status": "running"})
    assert prepare_demo_dir(tmp_path, PARAMS, overwrite=False) is True
    assert list(tmp_path.iterdir()) == []


def test_too_little_disk_is_reported_before_writing(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    target = tmp_path / "demo"
    with pytest.raises(ClipctlError, match="not enough disk space for the demo"):
        outdir.check_demo_disk_space(target, 10**6)
    assert not target.exists()
