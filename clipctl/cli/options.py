"""Flags several evaluation commands share, defined once so that their names, defaults and help agree
(`zeroshot`, `eval retrieval`, `eval linear-probe`, `soup --greedy`, `wise-ft --data`)."""

from __future__ import annotations

from typing import Any

import typer


def batch_size(what: str = "") -> Any:
    return typer.Option(64, "--batch-size", "-b", help=f"Images per batch{what}.")


def workers() -> Any:
    return typer.Option(
        None,
        "--workers",
        "-j",
        help="Image loading processes  \\[default: cores, at most 4]",
        show_default=False,
    )


def device(what: str = "") -> Any:
    return typer.Option("cpu", "--device", help=f"cpu, cuda, cuda:N or mps{what}.")


def precision(what: str = "") -> Any:
    return typer.Option("fp32", "--precision", help=f"fp32 | bf16 | fp16 | amp | amp_bf16{what}.")


def split(help: str = "Split folder of a CLIP_benchmark wds dataset.") -> Any:  # noqa: A002 - typer's name
    return typer.Option("test", "--split", help=help)


def quiet() -> Any:
    return typer.Option(False, "--quiet", "-q", help="No progress bar.")


def unsafe_load() -> Any:
    return typer.Option(
        False, "--unsafe-load", help="Allow pickled checkpoints that need code to load (trusted files only)."
    )


def result_format() -> Any:
    return typer.Option("clipctl", "--format", help="clipctl | clip_benchmark (its result JSON shape).")


def csv_separator() -> Any:
    return typer.Option(
        None,
        "--csv-separator",
        help="CSV column separator  \\[default: ',' for .csv files, else TAB]",
        show_default=False,
    )


def decode_separator(separator: str | None) -> str | None:
    """A shell hands ``\\t`` over as two characters; ``\\t`` here means a TAB."""
    if separator is not None and "\\" in separator:
        return separator.encode().decode("unicode_escape")
    return separator
