"""Without the search extra, the search commands (and the demo, before it trains) fail with one line that says
what to install."""

from __future__ import annotations

import importlib.util

import pytest

from clipctl.cli.main import main
from clipctl.errors import ClipctlError
from clipctl.search.deps import SERVE_MODULES, require


@pytest.fixture
def without_faiss(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a)
    )


def test_missing_extra_is_one_line_naming_the_extra(without_faiss, tmp_path, capsys):
    with pytest.raises(
        ClipctlError, match=r"clipctl index needs faiss \(the search extra\): pip install 'clipctl\[search\]'"
    ):
        require(what="clipctl index")
    assert main(["index", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "idx")]) == 2
    assert "pip install 'clipctl[search]'" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 2
    assert "clipctl serve needs faiss" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick"]) == 2
    assert "the demo (it ends with a search) needs faiss" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # refused before anything is generated


def test_installed_extra_passes():
    require(SERVE_MODULES)
