"""Compute threads against loader workers on a CPU: a model whose training dwarfs its loading gets every core,
a small one keeps a core free per worker (the demo's choice), an explicit OMP_NUM_THREADS wins."""

from __future__ import annotations

import pytest
import torch

from clipctl.api import create_model
from clipctl.models.stats import training_gflops_per_sample
from clipctl.runtime import choose_compute_threads, reserved_loader_cores
from clipctl.runtime import workers as workers_mod


def _cost(name: str) -> float:
    cost = training_gflops_per_sample(create_model(name, device="meta"))
    assert cost is not None
    return cost


def test_heavy_model_with_one_worker_on_two_cores_computes_on_both():
    for name in ("ViT-B-32", "RN50"):
        assert reserved_loader_cores(2, 1, _cost(name)) == 0, name


def test_demo_model_keeps_a_core_for_its_worker():
    assert reserved_loader_cores(2, 1, _cost("tiny-RN-demo")) == 1
    assert reserved_loader_cores(2, 1, _cost("tiny-ViT-8-64")) == 1


def test_many_cores_leave_some_to_a_busy_loader_but_never_all():
    assert reserved_loader_cores(64, 8, _cost("tiny-RN-demo")) == 8
    assert 0 < reserved_loader_cores(64, 8, _cost("ViT-B-32")) < 8
    assert reserved_loader_cores(4, 8, 0.1) == 3  # at least one compute thread


def test_unknown_cost_keeps_a_core_per_worker_and_no_workers_reserve_nothing():
    assert reserved_loader_cores(8, 2, None) == 2
    assert reserved_loader_cores(8, 0, 0.1) == 0


@pytest.fixture
def two_startup_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(workers_mod, "_STARTUP_THREADS", 2)
    yield
    torch.set_num_threads(before)


def test_choice_is_applied_and_repeatable(two_startup_threads):
    assert choose_compute_threads(1, 41.0) == 2 == torch.get_num_threads()
    assert choose_compute_threads(1, 0.1) == 1 == torch.get_num_threads()
    # a second run in the same process starts from torch's own count again, not from the last choice
    assert choose_compute_threads(1, 41.0) == 2


def test_explicit_omp_num_threads_wins(two_startup_threads, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_compute_threads(1, 41.0) == 1 == torch.get_num_threads()
