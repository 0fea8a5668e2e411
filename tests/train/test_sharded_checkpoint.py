"""Sharded checkpoint folders in one process: what a `--fsdp` run writes, how a resume finds and refuses them,
and every weights reader taking them as they are (consolidated without a process group)."""

from __future__ import annotations

import shutil

import pytest
import torch

from clipctl.api import create_model
from clipctl.checkpoint import is_sharded_checkpoint, load_checkpoint, read_state_dict
from clipctl.config.run import resolve_run_config
from clipctl.errors import ClipctlError
from clipctl.train.checkpointing import find_latest_checkpoint, read_info
from clipctl.train.trainer import preflight, run_training
from tests.train.engine_helpers import write_tiny_model


def _cfg(tmp_path, **extra):
    values = {
        "model": write_tiny_model(tmp_path),
        "train_data": "synthetic",
        "train_num_samples": 32,
        "batch_size": 8,
        "epochs": 1,
        "workers": 0,
        "precision": "fp32",
        "logs": str(tmp_path / "runs"),
        "name": "sharded",
        "fsdp": True,
        "save_every_n_steps": 3,
        "force_image_size": [32],
    }
    return resolve_run_config(None, {**values, **extra}, [])


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sharded")
    trainer = run_training(_cfg(tmp_path))
    return tmp_path, trainer


def test_a_fsdp_run_writes_complete_sharded_folders(sharded_run):
    tmp_path, trainer = sharded_run
    folder = tmp_path / "runs" / "sharded" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_1", "epoch_latest"]  # step_3 pruned at the end
    assert (folder / "epoch_latest").is_symlink() and (folder / "epoch_latest").resolve().name == "epoch_1"
    assert is_sharded_checkpoint(folder / "epoch_1")
    assert {".metadata", "clipctl_state.pt"} <= {p.name for p in (folder / "epoch_1").iterdir()}
    info = read_info(folder / "epoch_1")
    assert (info.epoch, info.step, info.batch_in_epoch) == (1, 4, 0)
    assert find_latest_checkpoint(folder.parent) == folder / "epoch_1"


def test_weights_readers_consolidate_a_sharded_folder(sharded_run):
    tmp_path, trainer = sharded_run
    folder = tmp_path / "runs" / "sharded" / "checkpoints" / "epoch_1"
    state = read_state_dict(folder)
    trained = trainer.model.state_dict()
    assert state.keys() == trained.keys()
    for key, value in trained.items():
        assert torch.equal(state[key], value), key
    model = create_model(str(tmp_path / "tiny-train.json"))
    load_checkpoint(model, folder)  # strict; the 1-element logit scale goes back to the model's 0-d shape
    assert torch.equal(model.logit_scale, trained["logit_scale"].reshape(()))
    preflight(_cfg(tmp_path, fsdp=False, name="from-sharded", pretrained=str(folder)))


def test_a_stale_stage_is_ignored_and_a_sharded_checkpoint_is_not_resumed_without_fsdp(sharded_run):
    tmp_path, _ = sharded_run
    folder = tmp_path / "runs" / "sharded" / "checkpoints"
    stale = folder / ".step_9.clipctl-tmp-dead"
    shutil.copytree(folder / "epoch_1", stale)  # a writer killed just before its rename
    assert find_latest_checkpoint(folder) == folder / "epoch_1"
    cfg = _cfg(tmp_path, fsdp=False, resume="latest", epochs=2)
    with pytest.raises(ClipctlError, match="is sharded .* resume it with --fsdp"):
        run_training(cfg)
    resumed = run_training(_cfg(tmp_path, resume="latest", epochs=2))
    assert resumed.global_step == 8 and not stale.exists()  # the next save swept the stale stage
