"""validate_data_config: every input mistake is one clear ClipctlError before anything is built."""

from __future__ import annotations

import io
import json
import tarfile
import types
from pathlib import Path

import pytest

from clipctl.errors import ClipctlError, UnknownNameError
from clipctl.train.data import resolve_dataset_type, validate_data_config


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
        workers=2,
        batch_size=4,
        seed=0,
    )
    base.update(kw)
    return types.SimpleNamespace(**base)


def shards(folder: Path, n: int, per_shard: int = 3, sizes: bool = True) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n):
        with tarfile.open(folder / f"{s:05d}.tar", "w") as tar:
            for i in range(per_shard):
                for ext, data in (("jpg", b"jpeg bytes"), ("txt", b"caption")):
                    info = tarfile.TarInfo(f"{s}{i:03d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    if sizes:
        (folder / "sizes.json").write_text(json.dumps({f"{s:05d}.tar": per_shard for s in range(n)}))
    return str(folder / f"{{00000..{n - 1:05d}}}.tar")


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("a.csv", "csv"),
        ("dir/b.TSV", "csv"),
        ("s/{00000..00009}.tar", "webdataset"),
        ("a.tar::b.tar", "webdataset"),
        ("synthetic", "synthetic"),
    ],
)
def test_dataset_type_auto_detection(spec, kind):
    assert resolve_dataset_type(spec, "auto") == kind


def test_unknown_dataset_type_and_unknown_extension_are_errors():
    with pytest.raises(UnknownNameError, match="unknown dataset type 'webdatset'; closest known: webdataset"):
        resolve_dataset_type("a.tar", "webdatset")
    with pytest.raises(ClipctlError, match="pass --dataset-type"):
        resolve_dataset_type("data.parquet", "auto")


def test_missing_shard_is_named(tmp_path):
    spec = shards(tmp_path, 2)
    (tmp_path / "00001.tar").unlink()
    with pytest.raises(ClipctlError, match=r"shard not found: .*00001\.tar"):
        validate_data_config(cfg(train_data=spec, workers=1))


def test_empty_shard_folder_is_an_error(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(ClipctlError, match="expands to no shards"):
        validate_data_config(cfg(train_data=str(tmp_path / "shards"), dataset_type="webdataset"))


def test_unknown_size_asks_for_train_num_samples(tmp_path):
    spec = shards(tmp_path, 2, sizes=False)
    with pytest.raises(
        ClipctlError, match="no sizes.json or __len__ next to the shards\\): pass --train-num-samples N"
    ):
        validate_data_config(cfg(train_data=spec))
    validate_data_config(cfg(train_data=spec, train_num_samples=100))
    with pytest.raises(ClipctlError, match="pass --val-num-samples N"):
        validate_data_config(cfg(val_data=spec))


def test_too_few_shards_for_workers_times_processes(tmp_path):
    spec = shards(tmp_path, 3)
    with pytest.raises(
        ClipctlError,
        match=r"3 shard\(s\) cannot give each of 2 data worker\(s\) x 2 process\(es\) its own shard: pass --workers 1, or pass --dataset-resampled",
    ):
        validate_data_config(cfg(train_data=spec, batch_size=1), world_size=2)
    validate_data_config(cfg(train_data=spec, batch_size=1, dataset_resampled=True), world_size=2)


def test_dataset_smaller_than_one_batch(tmp_path):
    spec = shards(tmp_path, 2, per_shard=3)
    with pytest.raises(ClipctlError, match="hold 6 samples, fewer than one batch \\(batch size 8\\)"):
        validate_data_config(cfg(train_data=spec, batch_size=8))


def test_upsampling_factors_need_resampling_and_matching_sources(tmp_path):
    a, b = shards(tmp_path / "a", 2), shards(tmp_path / "b", 2)
    with pytest.raises(ClipctlError, match="--dataset-resampled"):
        validate_data_config(cfg(train_data=f"{a}::{b}", train_data_upsampling_factors="1::2"))
    with pytest.raises(ClipctlError, match="has 3 value\\(s\\) but --train-data has 2 source"):
        validate_data_config(
            cfg(train_data=f"{a}::{b}", train_data_upsampling_factors="1::2::3", dataset_resampled=True)
        )
    validate_data_config(
        cfg(train_data=f"{a}::{b}", train_data_upsampling_factors="1::2", dataset_resampled=True)
    )


def test_synthetic_needs_a_sample_count():
    with pytest.raises(ClipctlError, match="--train-num-samples"):
        validate_data_config(cfg(dataset_type="synthetic"))
    validate_data_config(cfg(dataset_type="synthetic", train_num_samples=16))
