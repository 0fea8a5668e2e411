"""`--fsdp` and its companions on the command line: parsed from the config fields, refused with one line when
they do not compose, and the memory plan printed by `--dry-run` and `clipctl models show --plan`."""

from __future__ import annotations

import pytest
import yaml

from tests.cli.test_train_cli import run_cli
from tests.train.engine_helpers import write_colour_shards, write_tiny_model


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    return write_colour_shards(tmp_path_factory.mktemp("shards"), num_shards=2, per_shard=16)


def test_fsdp_flags_resolve_and_the_dry_run_prints_the_plan(tmp_path, shards, capsys):
    model = write_tiny_model(tmp_path)
    args = ["train", "--model", model, "--train-data", shards, "--workers", "1", "--logs", str(tmp_path)]
    args += ["--fsdp", "--async-checkpoint", "--no-fsdp-reshard-after-forward", "--dist-timeout", "30"]
    args += ["--batch-size", "8", "--device-memory", "0.001", "--dry-run"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["fsdp"] and resolved["async_checkpoint"] and not resolved["fsdp_reshard_after_forward"]
    assert resolved["dist_timeout"] == 30.0
    assert "memory per rank" in err and "FSDP" in err and "DDP" in err
    assert "DDP does not fit, FSDP does not fit" in err  # 1 MiB of device memory


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--async-checkpoint"], "--async-checkpoint needs --fsdp"),
        (["--fsdp", "--precision", "bf16"], "use amp_bf16"),
        (["--fsdp", "--fsdp-cpu-offload", "--device", "cpu"], "needs --device cuda"),
        (["--dist-timeout", "0"], "--dist-timeout must be a positive number"),
    ],
)
def test_settings_that_do_not_compose_are_refused_with_one_line(extra, needle, tmp_path, shards, capsys):
    args = ["train", "--model", write_tiny_model(tmp_path), "--train-data", shards, "--workers", "1"]
    args += ["--batch-size", "8"]
    code, _, err = run_cli([*args, "--logs", str(tmp_path), *extra, "--dry-run"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_torchrun_restarts_need_a_fixed_run_name(tmp_path, shards, capsys, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "2")
    args = ["train", "--model", write_tiny_model(tmp_path), "--train-data", shards, "--workers", "1"]
    args += ["--batch-size", "8"]
    code, _, err = run_cli([*args, "--logs", str(tmp_path), "--dry-run"], capsys)
    assert code == 2 and "--max-restarts needs a fixed --name" in err
    code, _, err = run_cli([*args, "--logs", str(tmp_path), "--name", "fixed", "--dry-run"], capsys)
    assert code == 0, err


def test_models_show_plan_prints_ddp_and_fsdp_per_rank(capsys):
    code, out, err = run_cli(
        [
            "models",
            "show",
            "tiny-ViT-8-64",
            "--plan",
            "--batch-size",
            "8",
            "--world-size",
            "4",
            "--device-memory",
            "8",
        ],
        capsys,
    )
    assert code == 0, err
    assert "8/rank x 4" in err and "optimizer state" in err and "--grad-checkpointing" in err
    assert "DDP fits, FSDP fits" in err
