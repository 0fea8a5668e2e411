"""The one precision table: what each ``--precision`` value means for the weights, the inputs, autocast and the
gradient scaler, and how it runs on a given device.

| value | weights | autocast | inputs | grad scaler |
| --- | --- | --- | --- | --- |
| fp32 | float32 | - | float32 | - |
| amp | float32 | float16 | float32 | yes |
| amp_bf16, amp_bfloat16 | float32 | bfloat16 | float32 | - |
| fp16, bf16 | matmul weights cast, norms float32 (OpenCLIP's mixed modes) | - | float16 / bfloat16 | - |
| pure_fp16, pure_bf16 | everything cast | - | float16 / bfloat16 | - |
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipctl.errors import ClipctlError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "fp16", "bf16", "pure_fp16", "pure_bf16", "amp", "amp_bf16", "amp_bfloat16")
# what the inference commands (zeroshot, eval, embed, caption) offer: the training-only aliases are left out
INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16", "amp", "amp_bf16")
# what `clipctl embed` offers: weights cast as a whole (autocast is slower than float32 on a CPU, a cast model
# is not)
CAST_PRECISIONS = ("fp32", "bf16", "fp16")

# dtype names, not dtypes: the table is read by the config layer, which does not import torch
_LOW = {"fp16": "float16", "bf16": "bfloat16", "pure_fp16": "float16", "pure_bf16": "bfloat16"}
_AUTOCAST = {"amp": "float16", "amp_bf16": "bfloat16", "amp_bfloat16": "bfloat16"}
# the float16 spelling of each value, and what to use on a CPU instead
_CPU_ALTERNATIVE = {"fp16": "bf16", "pure_fp16": "pure_bf16", "amp": "amp_bf16"}


@dataclass(frozen=True)
class PrecisionPlan:
    """How a ``--precision`` value runs on a device."""

    precision: str
    model_precision: str  # what create_model casts the weights to
    autocast_dtype: torch.dtype | None
    input_dtype: torch.dtype | None  # what images are cast to before the image tower (None: leave them)
    use_grad_scaler: bool
    note: str = ""  # a warning to log once (e.g. a fallback)


def check_precision(
    precision: str, choices: Sequence[str] = PRECISIONS, *, flag: str = "--precision"
) -> None:
    if precision not in choices:
        raise ClipctlError(f"unknown {flag} {precision!r}; choose one of {', '.join(choices)}")


def get_cast_dtype(precision: str) -> torch.dtype | None:
    """Weight dtype of the mixed 'fp16'/'bf16' modes (LayerNorms then compute in float32), else None."""
    check_precision(precision)
    return _dtype(_LOW[precision]) if precision in ("fp16", "bf16") else None


def get_input_dtype(precision: str) -> torch.dtype | None:
    """Dtype to cast input images to, or None to leave them as they are."""
    check_precision(precision)
    return _dtype(_LOW.get(precision))


def plan_precision(
    precision: str,
    device: torch.device,
    *,
    training: bool = False,
    choices: Sequence[str] = PRECISIONS,
) -> PrecisionPlan:
    """The plan for ``precision`` on ``device``.

    float16 on a CPU: training falls back to float32 with a note for 'amp' (fp16 autocast on a CPU is ~13x
    slower than fp32, measured with OpenCLIP's trainer on 2 cores) and keeps the explicit fp16 casts; inference
    refuses every float16 value and names the bfloat16 one to use instead.
    """
    check_precision(precision, choices)
    on_cpu = device.type == "cpu"
    if on_cpu and not training and precision in _CPU_ALTERNATIVE:
        raise ClipctlError(
            f"--precision {precision} (float16) is slow and poorly supported on a CPU; "
            f"use --precision {_CPU_ALTERNATIVE[precision]}"
        )
    if precision == "amp" and on_cpu:
        note = "precision 'amp' (fp16 autocast) is very slow on CPU; training in fp32 instead"
        return PrecisionPlan(precision, "fp32", None, None, False, note)
    note = _emulated_bf16_note(precision) if on_cpu else ""
    if precision in _AUTOCAST:
        return PrecisionPlan(precision, "fp32", _dtype(_AUTOCAST[precision]), None, precision == "amp", note)
    if precision in _LOW:
        return PrecisionPlan(precision, precision, None, _dtype(_LOW[precision]), False, note)
    return PrecisionPlan(precision, "fp32", None, None, False)


def _emulated_bf16_note(precision: str) -> str:
    """A warning when a bfloat16 precision runs on a CPU that has no native bfloat16 (it is then emulated and
    several times slower than float32); nothing when the CPU has it or cannot tell."""
    if "bfloat16" not in (_LOW.get(precision), _AUTOCAST.get(precision)):
        return ""
    from clipctl.runtime.cpu import cpu_model, native_bf16

    if native_bf16() is not False:
        return ""
    return (
        f"--precision {precision}: this CPU ({cpu_model()}) has no native bfloat16 (no avx512_bf16/amx_bf16), "
        "so bfloat16 is emulated and slower than fp32 here; --precision fp32 is faster"
    )


def autocast(plan: PrecisionPlan, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast as the plan says, or nothing."""
    import torch

    if plan.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=plan.autocast_dtype)


def _dtype(name: str | None) -> torch.dtype | None:
    import torch

    return None if name is None else getattr(torch, name)
