"""The last line of defence in `clipctl.cli.main`: a bug is one "internal error" line (exit 1), or, with
CLIPCTL_DEBUG=1 (which the test suite sets, so that no test can pass over an internal error), a traceback."""

from __future__ import annotations

import pytest
import typer

from clipctl.cli import app as app_module
from clipctl.cli.main import main


@pytest.fixture
def buggy_app(monkeypatch):
    app = typer.Typer()

    @app.command()
    def boom() -> None:
        raise RuntimeError("a bug")

    @app.command()
    def other() -> None:
        pass

    monkeypatch.setattr(app_module, "build_app", lambda: app)


def test_a_bug_is_one_internal_error_line_without_debug(buggy_app, monkeypatch, capsys):
    monkeypatch.delenv("CLIPCTL_DEBUG")
    assert main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "clipctl: internal error: RuntimeError: a bug (set CLIPCTL_DEBUG=1 for a traceback)"


def test_the_suite_runs_with_debug_so_internal_errors_fail_tests(buggy_app):
    with pytest.raises(RuntimeError, match="a bug"):
        main(["boom"])
