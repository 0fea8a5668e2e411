"""The typer app: one module per subcommand, each exposing ``register(app)``.

Subcommand modules import their heavy dependencies (torch, the jobs) inside the command functions, so
``clipctl --help`` and shell completion stay fast.
"""

from __future__ import annotations

import importlib

import typer

# Order is the order of `clipctl --help`.
SUBCOMMAND_MODULES = [
    "clipctl.cli.demo",
    "clipctl.cli.models",
    "clipctl.cli.data",
    "clipctl.cli.train",
    "clipctl.cli.zeroshot",
    "clipctl.cli.eval",
    "clipctl.cli.soup",
    "clipctl.cli.embed",
    "clipctl.cli.index",
    "clipctl.cli.search",
    "clipctl.cli.serve",
    "clipctl.cli.caption",
    "clipctl.cli.hub",
    "clipctl.cli.export",
    "clipctl.cli.completions",
]


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="clipctl",
        help="Build data, train, evaluate, embed with and publish CLIP-family models.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    return app
