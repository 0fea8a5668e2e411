"""The distribution: an sdist and a wheel built from a copy of the checkout (as `pip install .` and a release
would build them) carry every data file clipctl reads, the recipes, the completions and the licence files, and
the installed package finds its recipes and model configs without the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the checkout holds besides the package and that a distribution must carry (folder in checkout -> folder
# inside the installed clipctl package).
TOP_LEVEL_DATA = {"recipes": "clipctl/recipes", "completions": "clipctl/completions"}
LICENCE_FILES = ("LICENSE", "NOTICE")
_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache"
)


def package_data_files() -> list[str]:
    """Every non-Python file inside clipctl/ of the checkout (model configs, vocabulary, metadata, ...)."""
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "clipctl").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    )


def _hook(hook: str, source: Path, out: Path) -> Path:
    """Run one PEP 517 hook of setuptools' backend in ``source`` (what pip and `python -m build` call)."""
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=source, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel built from that sdist), both from a clean copy of the checkout."""
    work = tmp_path_factory.mktemp("dist")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=_IGNORED)
    sdist = _hook("build_sdist", source, work)
    with tarfile.open(sdist) as tar:
        tar.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    wheel = _hook("build_wheel", unpacked, work)
    return sdist, wheel


def test_wheel_carries_every_data_file_recipes_completions_and_licences(dists):
    names = set(zipfile.ZipFile(dists[1]).namelist())
    expected = package_data_files()
    for folder, target in TOP_LEVEL_DATA.items():
        expected += [f"{target}/{p.name}" for p in sorted((ROOT / folder).iterdir()) if p.is_file()]
    expected += [f"clipctl-{_version()}.dist-info/licenses/{name}" for name in LICENCE_FILES]
    missing = [name for name in expected if name not in names]
    assert not missing, f"missing from the wheel: {missing}"
    assert any(n.startswith("clipctl/config/model_configs/") for n in expected)
    assert "clipctl/recipes/tiny_cpu.yaml" in expected


def test_sdist_carries_the_top_level_folders_and_licences(dists):
    with tarfile.open(dists[0]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for folder in TOP_LEVEL_DATA:
        for path in (ROOT / folder).iterdir():
            assert f"{folder}/{path.name}" in names
    for name in (*LICENCE_FILES, "setup.py", *package_data_files()):
        assert name in names, f"{name} missing from the sdist"


def test_installed_wheel_finds_its_recipes_and_configs_outside_the_checkout(dists, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(dists[1]).extractall(site)  # a pure-Python wheel installs by unpacking
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLIPCTL_RECIPES_DIR")}
    env["PYTHONPATH"] = str(site)

    def clipctl(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "clipctl", *argv], cwd=empty, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import clipctl; print(clipctl.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(site), where
    assert "tiny_cpu" in clipctl("recipes", "list")
    assert "model: tiny-ViT-8-64" in clipctl("recipes", "show", "tiny_cpu")
    assert "tiny-RN-demo" in clipctl("models", "list")
    assert "_CLIPCTL_COMPLETE" in clipctl("completions", "bash")


def _version() -> str:
    import clipctl

    return clipctl.__version__
