"""What every job needs before its first batch, written once: the device, what a ``--precision`` means on it,
autocast, how many threads and loader workers to use, and the progress bar.

Imports only torch, rich and :mod:`clipctl.errors`, so every layer may use it. Names load on first use, so
that the config layer can read the precision table without importing torch (``clipctl --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "parse_device": "device",
    "device_for_rank": "device",
    "CAST_PRECISIONS": "precision",
    "INFERENCE_PRECISIONS": "precision",
    "PRECISIONS": "precision",
    "PrecisionPlan": "precision",
    "autocast": "precision",
    "check_precision": "precision",
    "get_cast_dtype": "precision",
    "get_input_dtype": "precision",
    "plan_precision": "precision",
    "ProgressBar": "progress",
    "progress_bar": "progress",
    "available_cores": "workers",
    "check_workers": "workers",
    "leave_cores_to_workers": "workers",
    "resolve_workers": "workers",
    "set_worker_threads": "workers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"clipctl.runtime.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clipctl.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
