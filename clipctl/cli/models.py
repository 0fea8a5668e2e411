"""`clipctl models list|show`: the registry and what each architecture costs."""

from __future__ import annotations

import fnmatch
import json

import typer

from clipctl.cli.console import out


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
        from rich.table import Table

        from clipctl.config.pretrained import (
            get_pretrained_cfg,
            list_pretrained,
            list_pretrained_tags_by_model,
        )
        from clipctl.config.registry import list_models

        def keep(name: str) -> bool:
            return filter_ is None or fnmatch.fnmatch(name.lower(), filter_.lower())

        if pretrained:
            rows = [
                (m, t, get_pretrained_cfg(m, t).get("hf_hub_id") or "")
                for m, t in list_pretrained()
                if keep(m)
            ]
            if as_json:
                out.print_json(
                    json.dumps([{"model": m, "pretrained": t, "hf_hub_id": h} for m, t, h in rows])
                )
                return
            table = Table("model", "pretrained", "hf-hub repo", title=f"{len(rows)} pretrained weights")
            for row in rows:
                table.add_row(*row)
            out.print(table)
            return
        names = [name for name in list_models() if keep(name)]
        if as_json:
            out.print_json(json.dumps(names))
            return
        table = Table("model", "pretrained tags", title=f"{len(names)} architectures")
        for name in names:
            tags = list_pretrained_tags_by_model(name)
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
        from dataclasses import asdict

        from rich.syntax import Syntax
        from rich.table import Table

        from clipctl.api import create_model
        from clipctl.config.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model
        from clipctl.config.resolver import resolve_model
        from clipctl.models.stats import model_stats

        resolved = resolve_model(name)
        model = create_model(name, device="meta")  # architecture only: no weights are read or fetched
        stats = model_stats(model)
        tags = {t: get_pretrained_cfg(resolved.name, t) for t in list_pretrained_tags_by_model(resolved.name)}
        if as_json:
            out.print_json(
                json.dumps(
                    {
                        "name": resolved.name,
                        "class": type(model).__name__,
                        "config": resolved.model_cfg,
                        "stats": asdict(stats),
                        "pretrained": tags,
                    }
                )
            )
            return
        out.print(f"[bold]{resolved.name}[/bold] ({type(model).__name__})")
        out.print(Syntax(json.dumps(resolved.model_cfg, indent=2), "json", theme="ansi_dark"))
        table = Table("", "value")
        table.add_row("parameters", f"{stats.params_total / 1e6:.2f}M")
        table.add_row("  image tower", f"{stats.params_visual / 1e6:.2f}M")
        table.add_row("  text tower", f"{stats.params_text / 1e6:.2f}M")
        h, w = stats.image_size
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        table.add_row(f"image GFLOPs @ {h}x{w}", fmt(stats.image_gflops))
        table.add_row(f"text GFLOPs @ {stats.context_length} tokens", fmt(stats.text_gflops))
        total = (
            None
            if stats.image_gflops is None or stats.text_gflops is None
            else stats.image_gflops + stats.text_gflops
        )
        table.add_row("total GFLOPs", fmt(total))
        out.print(table)
        if tags:
            # Tag names are what users copy: never truncate them, fold the long repo ids instead.
            tag_table = Table(title="pretrained tags")
            tag_table.add_column("pretrained", no_wrap=True, min_width=max(len(t) for t in tags))
            tag_table.add_column("hf-hub repo", overflow="fold")
            for heading in ("mean/std", "resize", "quick_gelu"):
                tag_table.add_column(heading, overflow="fold")
            for tag, cfg in tags.items():
                mean = (
                    "openai"
                    if cfg.get("mean") and abs(cfg["mean"][0] - 0.4814) < 1e-3
                    else str(cfg.get("mean"))
                )
                tag_table.add_row(
                    tag,
                    cfg.get("hf_hub_id") or "",
                    mean,
                    f"{cfg.get('resize_mode')}/{cfg.get('interpolation')}",
                    str(bool(cfg.get("quick_gelu"))),
                )
            out.print(tag_table)
        else:
            out.print("no pretrained tags")

    app.add_typer(models, name="models")
