"""Loader planning: how many loader cores a run needs, and the --dry-run warning when --workers is far below."""

from __future__ import annotations

from clipctl.cli.main import main
from clipctl.train import planning
from tests.train.engine_helpers import write_colour_shards


def test_a_gpu_training_vit_b_32_needs_several_loader_cores():
    plan = planning.plan_loader("ViT-B-32", "cuda")
    assert 2000 < plan.samples_per_s < 5000
    assert 8 < plan.cores_needed < 25
    assert "far below" in plan.workers_warning(1)
    assert plan.workers_warning(8) is None


def test_a_cpu_run_of_a_heavy_model_needs_a_fraction_of_a_core(monkeypatch):
    monkeypatch.setattr(planning, "available_cores", lambda: 2)
    plan = planning.plan_loader("ViT-B-32", "cpu")
    assert plan.cores_needed < 0.1
    assert plan.workers_warning(1) is None


def test_small_models_on_a_gpu_are_capped_not_absurd():
    plan = planning.plan_loader("tiny-RN-demo", "cuda")
    assert plan.samples_per_s == planning.MAX_GPU_SAMPLES_PER_S


def test_dry_run_warns_about_too_few_workers(tmp_path, capsys):
    shards = write_colour_shards(tmp_path / "shards", num_shards=2, per_shard=40)
    base = [
        "train",
        "--model",
        "ViT-B-32",
        "--train-data",
        shards,
        "--logs",
        str(tmp_path / "runs"),
        "--dry-run",
    ]
    assert main([*base, "--device", "cuda", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "--workers 1 is far below" in err and "loader worker(s) per process" in err
    assert main([*base, "--device", "cpu", "--workers", "1"]) == 0
    assert "far below" not in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
