"""`clipctl eval retrieval`: image<->text recall@1/5/10 on a CSV, webdataset shards or a CLIP_benchmark folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

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
    eval_app = typer.Typer(help="Evaluate models on benchmark tasks (retrieval).", no_args_is_help=True)

    @eval_app.command("retrieval")
    def retrieval(
        model: str = typer.Option(
            ..., "--model", help="Model name (see `clipctl models list`) or config JSON."
        ),
        pretrained: str = typer.Option(
            ..., "--pretrained", help="Pretrained tag or weights file; 'none' for random weights."
        ),
        data: str = typer.Option(
            ...,
            "--data",
            help="CSV/TSV of image paths and captions, webdataset shards ('dir/{00000..00009}.tar' or a folder "
            "of .tar), or a CLIP_benchmark wds retrieval dataset folder.",
        ),
        csv_img_key: str = typer.Option("filepath", "--csv-img-key", help="CSV column with image paths."),
        csv_caption_key: str = typer.Option("title", "--csv-caption-key", help="CSV column with captions."),
        csv_separator: str = typer.Option(
            None,
            "--csv-separator",
            help="CSV column separator  \\[default: ',' for .csv files, else TAB]",
            show_default=False,
        ),
        out_path: Path = typer.Option(None, "--out", "-o", help="Results JSON."),
        fmt: str = typer.Option(
            "clipctl", "--format", help="clipctl | clip_benchmark (its result JSON shape)."
        ),
        batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per batch."),
        workers: int = typer.Option(
            None,
            "--workers",
            "-j",
            help="Image loading processes  \\[default: cores, at most 4]",
            show_default=False,
        ),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
        precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 | amp | amp_bf16."),
        split: str = typer.Option("test", "--split", help="Split folder of a CLIP_benchmark wds dataset."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace --out even if it holds results of another model."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Image->text and text->image recall@1/5/10, ranked in chunks (memory does not grow as N²)."""
        from clipctl.cli.zeroshot import print_written
        from clipctl.eval.results import write_results
        from clipctl.eval.retrieval_job import RetrievalOptions, retrieval_document

        if csv_separator is not None:
            # a shell hands "\t" over as two characters
            csv_separator = (
                csv_separator.encode().decode("unicode_escape") if "\\" in csv_separator else csv_separator
            )
        doc = retrieval_document(
            RetrievalOptions(
                model,
                pretrained,
                data,
                out_path,
                format=fmt,
                overwrite=overwrite,
                csv_img_key=csv_img_key,
                csv_caption_key=csv_caption_key,
                csv_separator=csv_separator,
                split=split,
                batch_size=batch_size,
                workers=workers,
                device=device,
                precision=precision,
                progress=not quiet,
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
        if out_path is not None:
            write_results(out_path, [doc], fmt, overwrite=overwrite)
            print_written(out_path, [doc], fmt)

    app.add_typer(eval_app, name="eval")
