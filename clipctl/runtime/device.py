"""``--device``: parsed once, with one clear line when the device is not there."""

from __future__ import annotations

import torch

from clipctl.errors import ClipctlError

AUTO = ("", "auto")


def parse_device(device: str | torch.device | None, *, flag: str = "--device") -> torch.device:
    """``None``/``auto``: CUDA when available, else the CPU. An unknown or absent device is a ClipctlError."""
    if device is None or (isinstance(device, str) and device.lower() in AUTO):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ClipctlError(f"unknown {flag} {device!r}; e.g. cpu, cuda, cuda:1, mps") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ClipctlError(f"{flag} {device} requested but CUDA is not available here; use {flag} cpu")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ClipctlError(f"{flag} {device} requested but MPS is not available here; use {flag} cpu")
    return parsed


def device_for_rank(
    device: str | torch.device | None, local_rank: int, *, set_device_rank: bool
) -> torch.device:
    """The device of one process of a distributed job: ``cuda`` becomes ``cuda:LOCAL_RANK`` (unless the
    user named an index or asked not to), and becomes the process's current CUDA device."""
    parsed = parse_device(device)
    if parsed.type == "cuda":
        if parsed.index is None and set_device_rank:
            parsed = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(parsed)
    return parsed
