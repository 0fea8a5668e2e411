"""One separator parser for every command that reads a CSV/TSV (`data pack --separator`, `eval retrieval`,
`train` and `distill --csv-separator`): the same spellings work everywhere, and anything else is one line."""

from __future__ import annotations

import pytest

from clipctl.cli.main import main
from clipctl.data.csv_table import parse_separator
from clipctl.errors import ClipctlError
from tests.eval.eval_data import make_image_folder, tiny_model_files
from tests.helpers import assert_user_error

SPELLINGS = {
    "tab": "\t", "TAB": "\t", "\\t": "\t", "\t": "\t", ",": ",", "comma": ",", ";": ";",
    "semicolon": ";", "|": "|", "pipe": "|",
}  # fmt: skip


@pytest.mark.parametrize(("typed", "meant"), sorted(SPELLINGS.items()))
def test_every_spelling_means_one_character(typed, meant):
    assert parse_separator(typed) == meant


@pytest.mark.parametrize("typed", ["", "ab", "tabs", "\\n\\t"])
def test_anything_else_is_refused_with_the_spellings_named(typed):
    with pytest.raises(ClipctlError, match=r"unknown CSV separator .*tab or '\\t'"):
        parse_separator(typed)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, str]:
    """The same pairs written with each separator, images beside them; and a tiny model."""
    root = tmp_path_factory.mktemp("tables")
    make_image_folder(root, {"x": 4})
    found = {}
    for name, sep in (("tab", "\t"), ("semicolon", ";"), ("pipe", "|")):
        path = root / f"pairs_{name}.csv"  # the wrong suffix for most: only the flag tells
        rows = "".join(f"x/{i}.png{sep}caption {i}\n" for i in range(4))
        path.write_text(f"filepath{sep}title\n{rows}")
        found[name] = str(path)
    found["model"], found["weights"] = tiny_model_files(root / "model")
    return found


def _commands(tables: dict[str, str], name: str, sep: str, tmp) -> dict[str, list[str]]:
    model = ["--model", tables["model"]]
    train = [
        *model,
        "--train-data",
        tables[name],
        "--csv-separator",
        sep,
        "--batch-size",
        "2",
        "--workers",
        "0",
    ]
    train += ["--logs", str(tmp / "runs"), "--dry-run"]
    return {
        "data pack": ["data", "pack", tables[name], "--separator", sep, "--out", str(tmp / "packed"), "--processes", "1"],
        "eval retrieval": ["eval", "retrieval", *model, "--pretrained", tables["weights"], "--data", tables[name],
                           "--csv-separator", sep, "--workers", "0", "--quiet"],
        "train": ["train", *train],
        "distill": ["distill", *train, "--teacher", tables["model"], "--teacher-pretrained", tables["weights"]],
    }  # fmt: skip


COMMANDS = ("data pack", "eval retrieval", "train", "distill")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("name", "typed"), [("tab", "tab"), ("tab", "\\t"), ("semicolon", "semicolon"), ("pipe", "|")]
)
def test_every_command_reads_the_table_with_any_spelling(command, name, typed, tables, tmp_path, capsys):
    assert main(_commands(tables, name, typed, tmp_path)[command]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_unknown_separator_in_one_line(command, tables, tmp_path, capsys):
    assert main(_commands(tables, "tab", "tabs", tmp_path)[command]) == 2
    assert_user_error(capsys.readouterr().err, "unknown CSV separator 'tabs'")
