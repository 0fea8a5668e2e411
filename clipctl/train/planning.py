"""How many loader cores a run needs: the model's training cost per sample sets how fast the device consumes
samples, the loader's measured cost per sample sets how many cores it takes to keep up. ``clipctl train
--dry-run`` prints a warning when ``--workers`` is far below that."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from clipctl.errors import ClipctlError
from clipctl.runtime.workers import CORE_GFLOPS, LOADER_CORE_SECONDS, available_cores

# A sustained mixed-precision training rate for one A100-class GPU (TFLOP/s): ~40% of its 312 bf16 peak.
GPU_TFLOPS = 125.0
# Small models are bound by kernel launches and the step's fixed costs on a GPU, not by FLOPs.
MAX_GPU_SAMPLES_PER_S = 10_000.0
FAR_BELOW = 0.5  # warn when the workers are fewer than half the cores the loader needs


@dataclass
class LoaderPlan:
    device: str
    samples_per_s: float
    cores_needed: float

    def workers_warning(self, workers: int) -> str | None:
        needed = math.ceil(self.cores_needed)
        if workers >= FAR_BELOW * self.cores_needed or needed <= 1 and workers >= 1:
            return None
        return (
            f"--workers {workers} is far below what this run needs: one {self.device} trains this model at about "
            f"{self.samples_per_s:,.0f} samples/s and a loader core delivers about {1 / LOADER_CORE_SECONDS:.0f} "
            f"(256 px JPEGs), so it needs about {needed} loader worker(s) per process"
        )


def device_samples_per_s(train_gflops: float, device: str) -> float:
    """Samples/s one device trains a model of ``train_gflops`` per sample at: a GPU at GPU_TFLOPS, a CPU at
    CORE_GFLOPS per core."""
    if device.startswith("cuda"):
        return min(MAX_GPU_SAMPLES_PER_S, GPU_TFLOPS * 1e3 / train_gflops)
    return available_cores() * CORE_GFLOPS / train_gflops


def plan_loader(model_name: str, device: str | None = None) -> LoaderPlan | None:
    """The loader cores ``model_name`` needs on ``device`` (default: cuda when available); None when the
    model's cost cannot be counted."""
    from clipctl.config.resolver import resolve_model
    from clipctl.models import build_model_from_config
    from clipctl.models.stats import training_gflops_per_sample

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        with torch.device("meta"):  # structure only: no weights allocated or read
            model = build_model_from_config(resolve_model(model_name).model_cfg)
        gflops = training_gflops_per_sample(model)
    except ClipctlError:  # e.g. a Hugging Face text tower whose config is not cached: no estimate, no warning
        return None
    if not gflops:
        return None
    rate = device_samples_per_s(gflops, device)
    name = "GPU (A100-class)" if device.startswith("cuda") else f"CPU ({available_cores()} cores)"
    return LoaderPlan(name, rate, rate * LOADER_CORE_SECONDS)
