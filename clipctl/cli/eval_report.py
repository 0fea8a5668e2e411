"""`clipctl eval report`: result files merged into one model x dataset table (Markdown, CSV or HTML) and a bar plot."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli.console import err, out


def print_report_table(table) -> None:  # noqa: ANN001 - clipctl.eval.report.ResultTable, imported lazily
    from rich.markup import escape
    from rich.table import Table

    shown = Table()
    shown.add_column("model")
    shown.add_column("pretrained")
    for column in table.columns:
        shown.add_column(escape(table.column_label(column)), justify="right")
    shown.add_column("average", justify="right")
    for row in table.rows:
        values = [table.values.get((row, c)) for c in table.columns] + [table.average(row)]
        shown.add_row(
            *(escape(part) for part in row), *("-" if v is None else f"{100 * v:.2f}" for v in values)
        )
    out.print(shown)
    out.print(escape(table.metric_legend()), soft_wrap=True)


def register_report(eval_app: typer.Typer) -> None:
    @eval_app.command("report")
    def report(
        results: list[Path] = typer.Argument(
            ...,
            help="Results JSON files of zeroshot, eval retrieval, eval linear-probe (clipctl or clip_benchmark shape).",
        ),
        out_path: Path = typer.Option(..., "--out", "-o", help="The table: .md, .csv or .html."),
        plot: Path = typer.Option(None, "--plot", help="Also draw a bar plot (PNG)."),
        metric: str = typer.Option(
            "auto",
            "--metric",
            help="auto (top-1; retrieval: mean recall@1) | top1 | top5 | mean_per_class_recall | recall@1 | "
            "recall@5 | recall@10.",
        ),
    ) -> None:
        """Merge result files into one model x dataset table with an average column (and a bar plot)."""
        from rich.markup import escape

        from clipctl.eval.report import build_table
        from clipctl.eval.report_plot import check_plot_path, plot_table
        from clipctl.eval.report_render import output_format, write_table

        output_format(out_path)  # refuse an unknown extension before reading anything
        if plot is not None:
            check_plot_path(plot)
        table = build_table(list(results), metric)
        print_report_table(table)
        write_table(table, out_path)
        written = [str(out_path)]
        if plot is not None:
            plot_table(table, plot)
            written.append(str(plot))
        err.print(escape(f"written: {', '.join(written)}"), soft_wrap=True)
