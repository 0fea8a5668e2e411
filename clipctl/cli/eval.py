"""`clipctl eval`: the group, and `eval retrieval` (image<->text recall@1/5/10 on a CSV, webdataset shards or a
CLIP_benchmark folder). `eval linear-probe` and `eval report` live in their own modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clipctl.cli import options
from clipctl.cli.console import out


def print_retrieval_table(doc: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    metrics = doc["metrics"]
    title = (
        f"retrieval: {doc['model']} ({doc['pretrained'] or 'random weights'}) on {doc['dataset']}: "
        f"{doc['num_images']} images, {doc['num_texts']} texts"
    )
    out.print(escape(title), soft_wrap=True)
    table = Table()
    for column in ("direction", "R@1", "R@5", "R@10", "mean rank", "median rank"):
        table.add_column(column, justify="left" if column == "direction" else "right")
    for prefix, label in (("image_to_text", "image -> text"), ("text_to_image", "text -> image")):
        table.add_row(
            label,
            *(f"{100 * metrics[f'{prefix}_R@{k}']:.2f}%" for k in (1, 5, 10)),
            f"{metrics[f'{prefix}_mean_rank']:.1f}",
            f"{metrics[f'{prefix}_median_rank']:.0f}",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(
        help="Evaluate models on benchmark tasks (retrieval, linear probe) and tabulate results.",
        no_args_is_help=True,
    )

    @eval_app.command("retrieval")
    def retrieval(
        model: str = options.model(),
        pretrained: str = options.pretrained(),
        data: str = typer.Option(
            ...,
            "--data",
            help="CSV/TSV of image paths and captions, webdataset shards ('dir/{00000..00009}.tar' or a folder "
            "of .tar), or a CLIP_benchmark wds retrieval dataset folder.",
        ),
        csv_img_key: str = typer.Option("filepath", "--csv-img-key", help="CSV column with image paths."),
        csv_caption_key: str = typer.Option("title", "--csv-caption-key", help="CSV column with captions."),
        csv_separator: str = options.csv_separator(),
        out_path: Path = typer.Option(None, "--out", "-o", help="Results JSON."),
        fmt: str = options.results_format(),
        batch_size: int = options.batch_size(),
        workers: int = options.loader_workers(),
        device: str = options.device(),
        precision: str = options.eval_precision(),
        split: str = options.wds_split(),
        overwrite: bool = options.overwrite_results(),
        quiet: bool = options.quiet(),
    ) -> None:
        """Image->text and text->image recall@1/5/10, ranked in chunks (memory does not grow as N²)."""
        from clipctl.cli.results import save_results
        from clipctl.eval.retrieval_job import RetrievalOptions, retrieval_document

        doc = retrieval_document(
            RetrievalOptions(
                model,
                pretrained,
                data,
                out_path,
                csv_img_key=csv_img_key,
                csv_caption_key=csv_caption_key,
                csv_separator=csv_separator,
                split=split,
                **options.evaluation_settings(fmt, overwrite, batch_size, workers, device, precision, quiet),
            )
        )
        if doc["num_unreadable"]:
            from rich.markup import escape

            from clipctl.cli.console import err

            first = doc["unreadable"][0]
            err.print(
                f"[yellow]note:[/] skipped {doc['num_unreadable']} unreadable sample(s) "
                f"(first: {escape(first[0])}: {escape(first[1])})",
                soft_wrap=True,
            )
        print_retrieval_table(doc)
        save_results(out_path, [doc], fmt, overwrite)

    from clipctl.cli.eval_probe import register_linear_probe
    from clipctl.cli.eval_report import register_report

    register_linear_probe(eval_app)
    register_report(eval_app)
    app.add_typer(eval_app, name="eval")
