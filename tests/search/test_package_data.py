"""The search page ships in the wheel: every file under clipctl/search/static/ matches a package-data pattern."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]


def test_static_files_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["clipctl"]
    static = sorted((ROOT / "clipctl" / "search" / "static").iterdir())
    assert {p.name for p in static} >= {"index.html", "app.js"}
    for path in static:
        relative = path.relative_to(ROOT / "clipctl").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
