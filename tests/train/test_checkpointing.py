"""Which checkpoint ``--resume latest`` picks (by stored epoch and step, among complete files), and atomic links."""

from __future__ import annotations

import torch

from clipctl.train import checkpointing as ckpt_io


def _ckpt(path, epoch: int, step: int, batch: int = 0) -> None:
    torch.save(
        {"epoch": epoch, "step": step, "batch_in_epoch": batch, "state_dict": {"w": torch.zeros(2)}}, path
    )


def test_latest_is_chosen_by_epoch_and_step_not_by_file_name(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    _ckpt(folder / "epoch_9.pt", 9, 90)
    _ckpt(folder / "epoch_10.pt", 10, 100)  # sorts before epoch_9.pt as a string
    _ckpt(folder / "step_105.pt", 10, 105, batch=5)  # mid-epoch, newer than epoch_10
    _ckpt(folder / "epoch_latest.pt", 9, 90)  # a stale "latest" must not win because of its name
    good = (folder / "step_105.pt").read_bytes()
    (folder / "epoch_11.pt").write_bytes(good[: len(good) // 2])  # truncated: not complete, not a candidate
    (folder / "tmp.pt").write_bytes(b"garbage")
    torch.save({"w": torch.zeros(2)}, folder / "zz_bare_weights.pt")  # no position: not a candidate
    assert ckpt_io.find_latest_checkpoint(tmp_path) == folder / "step_105.pt"


def test_no_checkpoint_means_none(tmp_path):
    assert ckpt_io.find_latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_1.pt").write_bytes(b"")
    assert ckpt_io.find_latest_checkpoint(tmp_path) is None


def test_save_as_writes_once_and_links_the_other_names(tmp_path):
    first = ckpt_io.save_as(
        {"epoch": 1, "step": 8, "state_dict": {}}, tmp_path, ["epoch_1.pt", "epoch_latest.pt"]
    )
    assert first == tmp_path / "epoch_1.pt"
    assert ckpt_io.read_info(tmp_path / "epoch_latest.pt").order == (1, 8)
    ckpt_io.save_as({"epoch": 2, "step": 16, "state_dict": {}}, tmp_path, ["epoch_2.pt", "epoch_latest.pt"])
    assert ckpt_io.read_info(tmp_path / "epoch_latest.pt").order == (2, 16)
    assert ckpt_io.read_info(tmp_path / "epoch_1.pt").order == (1, 8)  # replacing the link left epoch_1 alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pt", "epoch_2.pt", "epoch_latest.pt"]
