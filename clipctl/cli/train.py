"""`clipctl train`, `clipctl resume`, `clipctl distill` and `clipctl recipes list|show`.

The training commands take OpenCLIP's flags under their own names (``--train-data``, ``--batch-size``,
``--aug-cfg k=v ...``, ``--clip-grad-norm`` ...), so the commands printed in model cards run unchanged. Their
flag table is built from :class:`clipctl.config.run.TrainConfig`'s fields, grouped by concern, and parsed
with argparse because typer cannot take ``nargs='+'`` options such as ``--aug-cfg`` and ``--image-mean``.
"""

from __future__ import annotations

import argparse
from typing import Any

import typer

from clipctl.cli.console import err, out
from clipctl.errors import ClipctlError

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
_GROUP_TITLES = {
    "data": "data",
    "model": "model",
    "optim": "optimisation and precision",
    "loss": "loss",
    "distributed": "distributed",
    "logging": "logging",
    "checkpoint": "checkpoints and resume",
    "eval": "evaluation",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise ClipctlError(f"{message} (see '{self.prog} --help')")


def build_parser(command: str) -> argparse.ArgumentParser:
    """The flag table of ``clipctl train`` (and its variants ``distill`` and ``resume``)."""
    from clipctl.config.run import FIELDS, _base_type

    parser = _Parser(
        prog=f"clipctl {command}",
        description={
            "train": "Train a CLIP-family model (OpenCLIP's flags, plus --recipe, --set and --dry-run).",
            "distill": "Distill a teacher into a student model: the train flags plus --teacher/--teacher-pretrained.",
            "resume": "Resume a run from its folder's config.yaml and newest checkpoint; flags and --set override.",
        }[command],
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    if command == "resume":
        parser.add_argument("run_dir", help="The run folder (runs/NAME).")
    ours = parser.add_argument_group("clipctl")
    if command != "resume":
        ours.add_argument(
            "--recipe", help="Recipe name (see `clipctl recipes list`) or path to a recipe YAML."
        )
    ours.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="Override one config key (repeatable)."
    )
    ours.add_argument(
        "--dry-run", action="store_true", help="Resolve, validate and print the config; run nothing."
    )
    if command == "distill":
        ours.add_argument("--teacher", dest="distill_model", help="Teacher architecture.")
        ours.add_argument(
            "--teacher-pretrained", dest="distill_pretrained", help="Teacher weights (tag or file)."
        )
    groups = {key: parser.add_argument_group(title) for key, title in _GROUP_TITLES.items()}
    for name, spec in FIELDS.items():
        meta = spec.metadata
        if meta.get("cli") is False:
            continue
        flags = ["--" + name.replace("_", "-"), *meta.get("aliases", ())]
        kind, _ = _base_type(name)
        kwargs: dict[str, Any] = {"dest": name, "help": meta["help"]}
        if kind is bool:
            kwargs["action"] = "store_true"
        elif kind is list or name == "aug_cfg":
            kwargs["nargs"] = meta.get("nargs", "+")
            kwargs["type"] = meta.get("item_type", str)
        else:
            kwargs["type"] = kind if kind in (int, float) else str
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
        groups[meta["group"]].add_argument(*flags, **kwargs)
    return parser


def parse_train_args(command: str, argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our options: recipe/set/dry_run/run_dir, the run-config keys the user passed)."""
    ns = vars(build_parser(command).parse_args(argv))
    ours = {k: ns.pop(k) for k in ("recipe", "set", "dry_run", "run_dir") if k in ns}
    return ours, ns


def _print_config(cfg: Any) -> None:
    from clipctl.config.run import dump_run_config

    typer.echo(dump_run_config(cfg), nl=False)


def _warn_about_workers(cfg: Any) -> None:
    from clipctl.train.planning import plan_loader

    plan = plan_loader(cfg.model, cfg.device)
    warning = plan.workers_warning(cfg.workers) if plan is not None else None
    if warning:
        err.print(f"[yellow]warning[/yellow]: {warning}")


def _execute(cfg: Any, dry_run: bool) -> None:
    from clipctl.train.trainer import preflight, run_training

    if dry_run:
        preflight(cfg)
        _print_config(cfg)
        _warn_about_workers(cfg)
        return
    trainer = run_training(cfg)
    if trainer.env is not None and trainer.env.is_master:
        where = f" in {trainer.run_dir}" if trainer.run_dir is not None else ""
        err.print(f"[green]done[/green]: {cfg.epochs} epoch(s){where}")


def train_command(argv: list[str], command: str = "train") -> None:
    from clipctl.config.run import resolve_run_config

    ours, explicit = parse_train_args(command, argv)
    if command == "distill" and not explicit.get("distill_model"):
        raise ClipctlError("clipctl distill needs --teacher MODEL and --teacher-pretrained TAG_OR_FILE")
    cfg = resolve_run_config(ours.get("recipe"), explicit, ours.get("set") or [])
    _execute(cfg, bool(ours.get("dry_run")))


def resume_command(argv: list[str]) -> None:
    from clipctl.train.resume import resume_config

    ours, explicit = parse_train_args("resume", argv)
    cfg = resume_config(ours["run_dir"], explicit, ours.get("set") or [])
    _execute(cfg, bool(ours.get("dry_run")))


def register(app: typer.Typer) -> None:
    @app.command("train", context_settings=_PASS_THROUGH, add_help_option=False)
    def train(ctx: typer.Context) -> None:
        """Train a model: OpenCLIP's flags, --recipe NAME, --set key=value, --dry-run (see --help)."""
        train_command(list(ctx.args), "train")

    @app.command("resume", context_settings=_PASS_THROUGH, add_help_option=False)
    def resume(ctx: typer.Context) -> None:
        """Resume runs/NAME from its config.yaml and newest checkpoint (--set key=value to override)."""
        resume_command(list(ctx.args))

    @app.command("distill", context_settings=_PASS_THROUGH, add_help_option=False)
    def distill(ctx: typer.Context) -> None:
        """Distill: --model STUDENT --teacher MODEL --teacher-pretrained TAG plus the train flags."""
        train_command(list(ctx.args), "distill")

    recipes = typer.Typer(
        help="List and show training recipes (published runs as YAML).", no_args_is_help=True
    )

    @recipes.command("list")
    def list_() -> None:
        """List recipe names with their one-line description."""
        from rich.table import Table

        from clipctl.config.recipes import list_recipes, load_recipe

        table = Table("recipe", "model", "description")
        for name in list_recipes():
            recipe = load_recipe(name)
            first = recipe.description.split(". ")[0]
            table.add_row(name, str(recipe.args.get("model", "")), first[:100])
        out.print(table)

    @recipes.command("show")
    def show(name: str = typer.Argument(..., help="Recipe name or path.")) -> None:
        """Print a recipe's file (description, source, args) after checking it as --recipe would."""
        from clipctl.config.recipes import find_recipe
        from clipctl.config.run import resolve_run_config

        resolve_run_config(name, {}, [])  # the checks of `train --recipe`: YAML, keys, value types, ranges
        typer.echo(find_recipe(name).read_text(encoding="utf-8"), nl=False)

    app.add_typer(recipes, name="recipes")
