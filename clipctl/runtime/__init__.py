"""What every job needs before its first batch, written once: the device, what a ``--precision`` means on it,
autocast, how many threads and loader workers to use, and the progress bar.

Imports only torch, rich and :mod:`clipctl.errors`, so every layer may use it. Names load on first use, so
that the config layer can read the precision table without importing torch (``clipctl --help`` stays fast).
"""

from __future__ import annotations

from clipctl._lazy import lazy_exports

_EXPORTS = {
    ".cpu": ("describe_cpu", "native_bf16"),
    ".device": ("parse_device", "device_for_rank"),
    ".precision": (
        "CAST_PRECISIONS",
        "INFERENCE_PRECISIONS",
        "PRECISIONS",
        "PrecisionPlan",
        "autocast",
        "check_precision",
        "get_cast_dtype",
        "get_input_dtype",
        "plan_precision",
    ),
    ".progress": ("ProgressBar", "progress_bar"),
    ".workers": (
        "available_cores",
        "check_workers",
        "choose_compute_threads",
        "reserved_loader_cores",
        "resolve_workers",
        "set_worker_threads",
    ),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
