"""`import clipctl` makes clipctl's timm models available to timm.create_model, in either import order, while
importing clipctl (and `clipctl --help`) still loads neither torch nor timm. Each case runs in a fresh
interpreter, since the registration happens at import time."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


CREATE = "import timm; print(type(timm.create_model('unireplknet_a', num_classes=0)).__name__)"
RESOURCES = (
    "import importlib.resources; print(importlib.resources.files('timm').joinpath('__init__.py').is_file())"
)


@pytest.mark.parametrize(
    "first", ["import clipctl; from timm import create_model", "import timm; import clipctl"]
)
def test_timm_create_model_finds_unireplknet_after_import_clipctl(first):
    """Either import order; the hook leaves timm's package resources reachable."""
    assert _python(f"{first}\n{CREATE}\n{RESOURCES}").split() == ["UniRepLKNet", "True"]


def test_import_clipctl_and_help_load_neither_torch_nor_timm():
    code = (
        "import sys, contextlib, io; import clipctl; from clipctl.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    assert _python(code) == "[]"
