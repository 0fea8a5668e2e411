"""Test-wide setup: everything runs offline against a private Hugging Face cache.

huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE when it is imported, so they are set here, before any
test module imports it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_HF_CACHE = tempfile.mkdtemp(prefix="clipctl-test-hf-cache-")
atexit.register(shutil.rmtree, _HF_CACHE, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = _HF_CACHE
os.environ["HF_HOME"] = os.path.join(_HF_CACHE, "home")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# "internal error" is a bug in every test: with CLIPCTL_DEBUG the CLI re-raises instead of printing it, so an
# in-process main() call fails the test with the traceback, and a subprocess prints one (never one line).
os.environ["CLIPCTL_DEBUG"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # two workers on two cores


@pytest.fixture
def hf_cache_dir() -> str:
    return _HF_CACHE
