"""The training job end to end on a tiny model: it learns, it writes the run folder of DESIGN.md, it stops on a
NaN loss keeping the last good checkpoint, and distillation runs through the same loop."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from clipctl.config.run import resolve_run_config
from clipctl.errors import RunFailure
from clipctl.train import checkpointing as ckpt_io
from clipctl.train.trainer import Trainer, preflight, run_training
from tests.train.engine_helpers import COLOURS, TINY_TRAIN_CFG, write_colour_shards, write_tiny_model


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("engine")
    return {
        "train": write_colour_shards(root / "train", num_shards=4, per_shard=64),
        # one held-out pair per colour, drawn with other noise: the captions are unique, so R@1 is well defined
        "val": write_colour_shards(
            root / "val", num_shards=1, per_shard=len(COLOURS), seed=99, each_colour_once=True
        ),
        "model": write_tiny_model(root),
    }


def tiny_config(data: dict[str, str], tmp_path: Path, **overrides):
    args = dict(
        model=data["model"],
        train_data=data["train"],
        batch_size=32,
        epochs=2,
        workers=0,
        lr=2e-3,
        warmup=10,
        wd=0.1,
        precision="fp32",
        logs=str(tmp_path / "runs"),
        name="tiny",
        log_every_n_steps=4,
        zeroshot_frequency=0,
    )
    args.update(overrides)
    return resolve_run_config(None, args, [])


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_tiny_model_learns_held_out_retrieval_far_above_chance(data, tmp_path):
    """48 steps of batch 32 on noisy colour patches; 12 held-out pairs, so chance R@1 is 1/12."""
    epochs = 6
    cfg = tiny_config(
        data, tmp_path, epochs=epochs, val_data=data["val"], val_frequency=epochs, report_to="tensorboard"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = run_training(cfg)
    assert not [w for w in caught if "requires_grad" in str(w.message)], "float() on a grad-requiring tensor"
    final = trainer.history[-1]
    chance = 1 / len(COLOURS)
    assert final["num_samples"] == len(COLOURS)
    assert chance < 0.09  # the thresholds below are more than 8 x chance
    assert final["image_to_text_R@1"] >= 0.75
    assert final["text_to_image_R@1"] >= 0.75

    # the run folder of DESIGN.md
    run = tmp_path / "runs" / "tiny"
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == epochs
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {f"epoch_{k}.pt" for k in range(1, epochs + 1)} | {"epoch_latest.pt", "results.jsonl"} <= names
    assert ckpt_io.read_info(run / "checkpoints" / "epoch_latest.pt").epoch == epochs
    assert any((run / "tensorboard").iterdir())
    assert f"saved epoch_{epochs}.pt" in (run / "out.log").read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train[-1]["step"] == trainer.global_step == epochs * 8
    assert train[-1]["loss"] < train[0]["loss"]
    assert [r for r in records if r["kind"] == "val"][-1]["image_to_text_R@1"] == final["image_to_text_R@1"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(data, tmp_path):
    cfg = tiny_config(data, tmp_path, epochs=1, save_every_n_steps=2)
    preflight(cfg)
    trainer = Trainer(cfg)
    trainer.setup()
    good_loss = trainer.loss_fn
    calls = {"n": 0}

    def poisoned(**kwargs):
        calls["n"] += 1
        losses = good_loss(**kwargs)
        if calls["n"] == 5:
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses

    trainer.loss_fn = poisoned
    with pytest.raises(RunFailure, match="NaN or infinite") as err:
        trainer.train()
    checkpoints = tmp_path / "runs" / "tiny" / "checkpoints"
    assert "step_4.pt" in str(err.value)
    latest = ckpt_io.read_info(checkpoints / "epoch_latest.pt")
    assert latest.step == 4
    assert all(torch.isfinite(v).all() for v in _state(checkpoints / "step_4.pt").values())
    assert not list(checkpoints.glob("epoch_1.pt"))


def test_step_checkpoints_keep_only_the_newest_and_latest_follows(data, tmp_path):
    cfg = tiny_config(data, tmp_path, epochs=1, save_every_n_steps=3)
    run_training(cfg)
    checkpoints = tmp_path / "runs" / "tiny" / "checkpoints"
    names = sorted(p.name for p in checkpoints.glob("*.pt"))
    # step files are dropped once the epoch checkpoint exists
    assert names == ["epoch_1.pt", "epoch_latest.pt"]
    assert ckpt_io.read_info(checkpoints / "epoch_latest.pt").order == (1, 8)


def _epoch_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "runs" / "tiny" / "checkpoints").glob("epoch_*.pt"))


@pytest.mark.parametrize(
    ("delete", "expected"),
    [
        (True, ["epoch_3.pt", "epoch_latest.pt"]),
        (False, ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt", "epoch_latest.pt"]),
    ],
)
def test_delete_previous_checkpoint_keeps_only_the_newest_epoch(data, tmp_path, delete, expected):
    cfg = tiny_config(data, tmp_path, epochs=3, delete_previous_checkpoint=delete, train_num_samples=64)
    run_training(cfg)
    assert _epoch_files(tmp_path) == expected
    latest = tmp_path / "runs" / "tiny" / "checkpoints" / "epoch_latest.pt"
    assert ckpt_io.read_info(latest).epoch == 3


def test_local_dir_with_a_config_and_no_weights_trains_from_scratch_and_says_so(data, tmp_path):
    """OpenCLIP's way to train a custom architecture: a folder holding only open_clip_config.json."""
    folder = tmp_path / "arch"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_TRAIN_CFG}))
    run_training(tiny_config(data, tmp_path, model=f"local-dir:{folder}", epochs=1, train_num_samples=64))
    log = (tmp_path / "runs" / "tiny" / "out.log").read_text()
    assert f"local-dir:{folder} holds no weights file: building its architecture with random weights" in log
    assert _epoch_files(tmp_path) == ["epoch_1.pt", "epoch_latest.pt"]


def test_save_frequency_zero_writes_only_the_last_epoch(data, tmp_path):
    """OpenCLIP's --save-frequency 0: no per-epoch checkpoints; the finished run is still saved."""
    run_training(tiny_config(data, tmp_path, epochs=3, save_frequency=0, train_num_samples=64))
    assert _epoch_files(tmp_path) == ["epoch_3.pt", "epoch_latest.pt"]


def test_resume_latest_continues_and_matches_an_uninterrupted_run(data, tmp_path):
    """Stop after epoch 1 of 2 (a finished epoch), resume with --resume latest: same weights as one run."""
    straight = tiny_config(data, tmp_path / "a", epochs=2)
    run_training(straight)
    first = tiny_config(data, tmp_path / "b", epochs=2)
    preflight(first)
    trainer = Trainer(first)
    trainer.setup()
    try:
        trainer._train_epoch(0)
        trainer.save_checkpoint(epoch=1, batch_in_epoch=0, files=["epoch_1.pt", "epoch_latest.pt"])
    finally:
        trainer.close()
    resumed = tiny_config(data, tmp_path / "b", epochs=2, resume="latest")
    trainer = run_training(resumed)
    assert trainer.start_epoch == 1
    a = _state(tmp_path / "a" / "runs" / "tiny" / "checkpoints" / "epoch_2.pt")
    b = _state(tmp_path / "b" / "runs" / "tiny" / "checkpoints" / "epoch_2.pt")
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0


def test_finished_run_resumes_to_nothing(data, tmp_path):
    run_training(tiny_config(data, tmp_path, epochs=1))
    trainer = run_training(tiny_config(data, tmp_path, epochs=1, resume="latest"))
    assert trainer.start_epoch == 1 and trainer.global_step == 8


@pytest.mark.parametrize("multi_positive", [False, True])
def test_distillation_runs_and_reports_the_distill_loss(data, tmp_path, multi_positive):
    teacher = tmp_path / "teacher.pt"
    from clipctl.api import create_model

    torch.manual_seed(1)
    torch.save(create_model(data["model"]).state_dict(), teacher)
    distill = dict(
        distill_model=data["model"], distill_pretrained=str(teacher), multi_positive=multi_positive
    )
    cfg = tiny_config(data, tmp_path, epochs=1, **distill)
    trainer = run_training(cfg)
    assert trainer.teacher is not None and not any(p.requires_grad for p in trainer.teacher.parameters())
    records = [
        json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()
    ]
    last = [r for r in records if r["kind"] == "train"][-1]
    assert last["distill_loss"] > 0 and last["loss"] == pytest.approx(
        last["contrastive_loss"] + last["distill_loss"], rel=1e-5
    )


def test_lock_text_works_on_the_built_in_text_tower(data, tmp_path):
    cfg = tiny_config(data, tmp_path, epochs=1, lock_text=True)
    trainer = run_training(cfg)
    model = trainer.model
    assert not model.token_embedding.weight.requires_grad
    assert model.visual.conv1.weight.requires_grad if hasattr(model.visual, "conv1") else True


TINY_COCA_CFG = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "layers": 1,
        "width": 32,
        "head_width": 16,
        "patch_size": 8,
        "attentional_pool": True,
        "attn_pooler_heads": 2,
        "attn_pooler_queries": 8,
        "output_tokens": True,
    },
    "text_cfg": {
        "context_length": 15,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
        "embed_cls": True,
        "output_tokens": True,
    },
    "multimodal_cfg": {"context_length": 15, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    "custom_text": True,
}


@pytest.mark.parametrize(
    ("variant", "overrides", "loss_keys"),
    [
        ("siglip", {"siglip": True}, {"contrastive_loss"}),
        ("accumulation", {"accum_freq": 2, "batch_size": 16, "grad_clip_norm": 1.0}, {"contrastive_loss"}),
        ("bf16 autocast", {"precision": "amp_bf16"}, {"contrastive_loss"}),
        ("coca", {"model": "COCA"}, {"contrastive_loss", "caption_loss"}),
        # shards without .cls members: label -1 everywhere, so repeated captions decide the positives
        ("siglip multi-positive", {"siglip": True, "multi_positive": True}, {"contrastive_loss"}),
        (
            "accumulated multi-positive",
            {"multi_positive": True, "accum_freq": 2, "batch_size": 16},
            {"contrastive_loss"},
        ),
        (
            "coca multi-positive",
            {"model": "COCA", "multi_positive": True},
            {"contrastive_loss", "caption_loss"},
        ),
    ],
)
def test_loss_and_precision_variants_train_and_log_finite_losses(
    variant, overrides, loss_keys, data, tmp_path
):
    if overrides.get("model") == "COCA":
        coca = tmp_path / "tiny-coca.json"
        coca.write_text(json.dumps(TINY_COCA_CFG))
        overrides = {**overrides, "model": str(coca)}
    trainer = run_training(tiny_config(data, tmp_path, epochs=1, **overrides))
    assert trainer.global_step == 8
    records = [
        json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()
    ]
    last = [r for r in records if r["kind"] == "train"][-1]
    assert loss_keys | {"loss"} <= set(last) and all(isinstance(last[k], float) for k in loss_keys)
    if variant.startswith("siglip"):
        assert trainer.model.logit_bias is not None


def test_resumes_an_openclip_training_checkpoint(data, tmp_path):
    """A run started with OpenCLIP's trainer continues under clipctl: same weights and optimizer groups."""
    open_clip = pytest.importorskip("open_clip")
    open_clip.add_model_config(data["model"])
    torch.manual_seed(5)
    theirs = open_clip.create_model(Path(data["model"]).stem)
    named = [(n, p) for n, p in theirs.named_parameters() if p.requires_grad]

    def exclude(n, p):  # open_clip_train.main's grouping
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.1},
        ],
        lr=1e-3,
    )
    for p in theirs.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    ckpt = tmp_path / "openclip_epoch_1.pt"
    torch.save(
        {
            "epoch": 1,
            "name": "theirs",
            "state_dict": {f"module.{k}": v for k, v in theirs.state_dict().items()},  # saved under DDP
            "optimizer": optimizer.state_dict(),
        },
        ckpt,
    )
    cfg = tiny_config(data, tmp_path, epochs=1, resume=str(ckpt))
    preflight(cfg)
    trainer = Trainer(cfg)
    try:
        trainer.setup()
        assert trainer.start_epoch == 1
        for name, value in theirs.state_dict().items():
            assert torch.equal(trainer.model.state_dict()[name], value), name
        ours = trainer.optimizer.state_dict()
        assert [len(g["params"]) for g in ours["param_groups"]] == [
            len(g["params"]) for g in optimizer.state_dict()["param_groups"]
        ]
        exp_avg = {i: s["exp_avg"] for i, s in ours["state"].items()}
        params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
        theirs_params = [p for g in optimizer.param_groups for p in g["params"]]
        for i, (mine, other) in enumerate(zip(params, theirs_params, strict=True)):
            assert mine.shape == other.shape and torch.equal(exp_avg[i], optimizer.state[other]["exp_avg"])
    finally:
        trainer.close()
