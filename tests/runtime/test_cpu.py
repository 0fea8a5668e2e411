"""Native bfloat16 detection from the CPU's flags, and the one-line warning when bf16 would be emulated."""

from __future__ import annotations

import pytest
import torch

from clipctl.runtime import cpu, precision
from clipctl.runtime.precision import plan_precision

X86_WITH = "processor : 0\nmodel name : Intel(R) Xeon(R) Platinum 8480+\nflags : fpu sse2 avx512f avx512_bf16 amx_bf16\n"
X86_WITHOUT = "processor : 0\nmodel name : AMD EPYC 7B12\nflags : fpu sse2 avx2 avx512f\n"
ARM_WITH = "processor : 0\nFeatures : fp asimd sve bf16 i8mm\nCPU part : 0xd40\n"


@pytest.mark.parametrize(
    ("text", "model", "native"),
    [
        (X86_WITH, "Intel(R) Xeon(R) Platinum 8480+", True),
        (X86_WITHOUT, "AMD EPYC 7B12", False),
        (ARM_WITH, "", True),
    ],
)
def test_flags_decide_native_bf16(text, model, native, monkeypatch):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: cpu.parse_cpuinfo(text))
    monkeypatch.setattr(cpu, "_sysctl", lambda name: "")
    assert cpu.native_bf16() is native
    assert cpu.parse_cpuinfo(text)[0] == model
    assert ("native bf16: yes" in cpu.describe_cpu()) is native


def test_unreadable_flags_claim_nothing(monkeypatch):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: ("", set()))
    monkeypatch.setattr(cpu, "_sysctl", lambda name: "")
    assert cpu.native_bf16() is None and "native bf16: unknown" in cpu.describe_cpu()


@pytest.mark.parametrize("value", ["bf16", "amp_bf16", "pure_bf16"])
def test_bf16_on_a_cpu_without_it_gets_one_warning_line(value, monkeypatch):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: cpu.parse_cpuinfo(X86_WITHOUT))
    plan = plan_precision(value, torch.device("cpu"), training=True)
    assert "no native bfloat16" in plan.note and "AMD EPYC 7B12" in plan.note and "\n" not in plan.note
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: cpu.parse_cpuinfo(X86_WITH))
    assert plan_precision(value, torch.device("cpu"), training=True).note == ""
    assert precision.plan_precision("fp32", torch.device("cpu")).note == ""
