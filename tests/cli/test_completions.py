"""Shell completions: the checked-in scripts are what the app generates, and the app answers their calls."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipctl.cli.app import build_app
from clipctl.cli.completions import SHELLS, completion_script, script_file_name
from clipctl.cli.main import main

CHECKED_IN = Path(__file__).resolve().parents[2] / "completions"


@pytest.mark.parametrize("shell", SHELLS)
def test_checked_in_script_equals_what_the_app_generates(shell):
    expected = completion_script(build_app(), shell)
    assert (CHECKED_IN / script_file_name(shell)).read_text() == expected, (
        "regenerate with: clipctl completions --write completions"
    )
    assert "_CLIPCTL_COMPLETE=complete_" + shell in expected and "clipctl" in expected


@pytest.mark.parametrize("shell", SHELLS)
def test_completions_command_prints_the_script(shell):
    result = CliRunner().invoke(build_app(), ["completions", shell])
    assert result.exit_code == 0
    assert result.stdout == (CHECKED_IN / script_file_name(shell)).read_text()


def test_write_regenerates_every_file(tmp_path):
    result = CliRunner().invoke(build_app(), ["completions", "--write", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for shell in SHELLS:
        assert (tmp_path / script_file_name(shell)).read_text() == (
            CHECKED_IN / script_file_name(shell)
        ).read_text()


def test_bash_completion_call_lists_subcommands_and_options(monkeypatch, capsys):
    monkeypatch.setenv("_CLIPCTL_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "clipctl pu")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert main([]) == 0
    assert capsys.readouterr().out.split() == ["push-to-hub"]

    monkeypatch.setenv("COMP_WORDS", "clipctl push-to-hub --re")
    monkeypatch.setenv("COMP_CWORD", "2")
    assert main([]) == 0
    assert set(capsys.readouterr().out.split()) == {"--repo-id", "--revision"}


def test_zsh_and_fish_completion_calls(monkeypatch, capsys):
    monkeypatch.setenv("_CLIPCTL_COMPLETE", "complete_zsh")
    monkeypatch.setenv("_TYPER_COMPLETE_ARGS", "clipctl capt")
    assert main([]) == 0
    assert "caption" in capsys.readouterr().out

    monkeypatch.setenv("_CLIPCTL_COMPLETE", "complete_fish")
    monkeypatch.setenv("_TYPER_COMPLETE_FISH_ACTION", "get-args")
    monkeypatch.setenv("_TYPER_COMPLETE_ARGS", "clipctl completions ")
    assert main([]) == 0
    assert capsys.readouterr().out.split() == list(SHELLS)


def test_unknown_shell_is_one_line_exit_2(capsys):
    assert main(["completions", "tcsh"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown shell 'tcsh'" in err
