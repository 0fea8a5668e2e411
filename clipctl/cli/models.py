"""`clipctl models list|show`: the registry and what each architecture costs."""

from __future__ import annotations

import json

import typer

from clipctl.cli.console import out


def _gflops(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _print_description(info) -> None:  # noqa: ANN001 - clipctl.model_info.ModelDescription (imported lazily)
    from rich.syntax import Syntax
    from rich.table import Table

    stats = info.stats
    out.print(f"[bold]{info.name}[/bold] ({info.model_class})")
    out.print(Syntax(json.dumps(info.config, indent=2), "json", theme="ansi_dark"))
    table = Table("", "value")
    table.add_row("parameters", f"{stats.params_total / 1e6:.2f}M")
    table.add_row("  image tower", f"{stats.params_visual / 1e6:.2f}M")
    table.add_row("  text tower", f"{stats.params_text / 1e6:.2f}M")
    h, w = stats.image_size
    table.add_row(f"image GFLOPs @ {h}x{w}", _gflops(stats.image_gflops))
    table.add_row(f"text GFLOPs @ {stats.context_length} tokens", _gflops(stats.text_gflops))
    table.add_row("total GFLOPs", _gflops(info.total_gflops))
    out.print(table)
    if not info.tags:
        out.print("no pretrained tags")
        return
    # Tag names are what users copy: never truncate them, fold the long repo ids instead.
    tag_table = Table(title="pretrained tags")
    tag_table.add_column("pretrained", no_wrap=True, min_width=max(len(t.tag) for t in info.tags))
    tag_table.add_column("hf-hub repo", overflow="fold")
    for heading in ("mean/std", "resize", "quick_gelu"):
        tag_table.add_column(heading, overflow="fold")
    for tag in info.tags:
        tag_table.add_row(tag.tag, tag.hf_hub_id, tag.mean_std, tag.resize, str(tag.quick_gelu))
    out.print(tag_table)


def register(app: typer.Typer) -> None:
    models = typer.Typer(
        help="List registered architectures and pretrained tags; show one in detail.", no_args_is_help=True
    )

    @models.command("list")
    def list_(
        pretrained: bool = typer.Option(
            False, "--pretrained", help="List model:tag pairs with their Hub repos."
        ),
        filter_: str = typer.Option(
            None, "--filter", help="Glob on the model name, e.g. 'ViT-B-*' or '*convnext*'."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """List architectures (or, with --pretrained, every model:tag pair)."""
        from dataclasses import asdict

        from rich.table import Table

        from clipctl.model_info import architectures, pretrained_rows

        if pretrained:
            rows = pretrained_rows(filter_)
            if as_json:
                out.print_json(json.dumps([asdict(row) for row in rows]))
                return
            table = Table("model", "pretrained", "hf-hub repo", title=f"{len(rows)} pretrained weights")
            for row in rows:
                table.add_row(row.model, row.pretrained, row.hf_hub_id)
            out.print(table)
            return
        found = architectures(filter_)
        if as_json:
            out.print_json(json.dumps([name for name, _ in found]))
            return
        table = Table("model", "pretrained tags", title=f"{len(found)} architectures")
        for name, tags in found:
            table.add_row(name, ", ".join(tags[:4]) + (f" (+{len(tags) - 4})" if len(tags) > 4 else ""))
        out.print(table)

    @models.command("show")
    def show(
        name: str = typer.Argument(
            ..., help="Registry name, hf-hub:ORG/REPO, local-dir:PATH or a .json config."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    ) -> None:
        """Config, parameter count, GFLOPs at its image size, and known pretrained tags."""
        from clipctl.model_info import describe_model

        info = describe_model(name)
        if as_json:
            out.print_json(json.dumps(info.to_dict()))
            return
        _print_description(info)

    app.add_typer(models, name="models")
