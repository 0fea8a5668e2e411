"""Flags that several subcommands share, declared once so that their names, defaults and help agree.

Each function returns a fresh ``typer.Option`` to use as a parameter default, e.g.
``device: str = options.device()``; ``help`` replaces the help text where one command says more.
"""

from __future__ import annotations

from typing import Any

import typer


def model() -> Any:
    return typer.Option(..., "--model", help="Model name (see `clipctl models list`) or config JSON.")


def pretrained() -> Any:
    return typer.Option(
        ..., "--pretrained", help="Pretrained tag or weights file; 'none' for random weights."
    )


# what to classify: zeroshot (and anything evaluating zero-shot on a held-out folder)


def classification_data(
    help: str = "Any ImageFolder (DIR/<class>/<image>), or a CLIP_benchmark wds dataset folder.",
) -> Any:
    return typer.Option(None, "--data", help=help)


def classnames(
    help: str = "With --data: one class name per line, in the folder's sorted class order.",
) -> Any:
    return typer.Option(None, "--classnames", help=help)


def templates(
    help: str = "openai | simple | FILE (one template per line, {c} or {} for the class name)  "
    "\\[default: a CLIP_benchmark dataset's own, else openai]",
) -> Any:
    return typer.Option(None, "--templates", help=help, show_default=False)


def wds_split() -> Any:
    return typer.Option("test", "--split", help="Split folder of a CLIP_benchmark wds dataset.")


# how to run an evaluation and where its results go


def results_format() -> Any:
    return typer.Option("clipctl", "--format", help="clipctl | clip_benchmark (its result JSON shape).")


def overwrite_results(help: str = "Replace --out even if it holds results of another model.") -> Any:
    return typer.Option(False, "--overwrite", help=help)


def batch_size(help: str = "Images per batch.") -> Any:
    return typer.Option(64, "--batch-size", "-b", help=help)


def loader_workers() -> Any:
    return typer.Option(
        None,
        "--workers",
        "-j",
        help="Image loading processes  \\[default: cores, at most 4]",
        show_default=False,
    )


def device(help: str = "cpu, cuda, cuda:N or mps.") -> Any:
    return typer.Option("cpu", "--device", help=help)


def eval_precision(help: str = "fp32 | bf16 | fp16 | amp | amp_bf16.") -> Any:
    return typer.Option("fp32", "--precision", help=help)


def quiet() -> Any:
    return typer.Option(False, "--quiet", "-q", help="No progress bar.")


def evaluation_settings(
    fmt: str, overwrite: bool, batch_size: int, workers: int | None, device: str, precision: str, quiet: bool
) -> dict[str, Any]:
    """The fields of an evaluation job's options that the shared flags above set."""
    return {
        "format": fmt,
        "overwrite": overwrite,
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "precision": precision,
        "progress": not quiet,
    }


def unsafe_load() -> Any:
    return typer.Option(
        False, "--unsafe-load", help="Allow pickled checkpoints that need code to load (trusted files only)."
    )


def csv_separator() -> Any:
    return typer.Option(
        None,
        "--csv-separator",
        help="CSV column separator  \\[default: ',' for .csv files, else TAB]",
        show_default=False,
    )


# searching an index: search and serve


def nprobe() -> Any:
    return typer.Option(
        None, "--nprobe", help="Approximate indexes: lists to visit (default: tuned when built)."
    )
