"""What the CPU is and whether it computes bfloat16 natively: for the bf16 warning and for benchmark headers.

On CPUs with AVX-512 BF16 or AMX (x86) or the BF16 extension (Arm) bfloat16 matmuls are native: 4.4x the
float32 rate measured on a 2-core Xeon VM with AMX (780 vs 177 GFLOP/s). Without them PyTorch emulates bfloat16,
which was 6.6x slower than float32 on a 2-core VM lacking the flags. The flags come from ``/proc/cpuinfo`` on Linux
and ``sysctl`` on macOS; elsewhere the answer is "unknown" and nothing is claimed.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess

X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_BF16_FLAG = "bf16"
CPUINFO = "/proc/cpuinfo"


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(model name, flags) from the text of /proc/cpuinfo (x86 ``flags``, Arm ``Features``)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, set[str]]:
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return "", set()


def _sysctl(name: str) -> str:
    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def cpu_model() -> str:
    model = _cpuinfo()[0] or (_sysctl("machdep.cpu.brand_string") if platform.system() == "Darwin" else "")
    return model or platform.processor() or platform.machine() or "unknown CPU"


def bf16_flags_found() -> list[str]:
    """The native-bfloat16 flags this CPU reports (empty when it has none, or when nothing can be read)."""
    flags = _cpuinfo()[1]
    found = [f for f in X86_BF16_FLAGS if f in flags]
    if ARM_BF16_FLAG in flags:
        found.append(ARM_BF16_FLAG)
    if not found and platform.system() == "Darwin" and _sysctl("hw.optional.arm.FEAT_BF16") == "1":
        found.append("FEAT_BF16")
    return found


def native_bf16() -> bool | None:
    """True / False when the CPU's flags say, None when they cannot be read (no claim either way)."""
    if bf16_flags_found():
        return True
    readable = bool(_cpuinfo()[1]) or (
        platform.system() == "Darwin" and _sysctl("hw.optional.arm.FEAT_BF16") != ""
    )
    return False if readable else None


def describe_cpu() -> str:
    """One line for benchmark output: model, cores, and whether bfloat16 is native."""
    flags = bf16_flags_found()
    native = {
        True: f"yes ({', '.join(flags)})",
        False: "no (no avx512_bf16/amx_bf16/bf16 flag)",
        None: "unknown",
    }
    return f"{cpu_model()}, {os.cpu_count()} cores, native bf16: {native[native_bf16()]}"
