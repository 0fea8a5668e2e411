"""`clipctl zeroshot`: zero-shot top-1/top-5/mean per-class recall on ImageNet, ImageNet-V2 or any ImageFolder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clipctl.cli.console import err, out


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def print_classification_table(docs: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    first = docs[0]
    out.print(
        escape(f"zero-shot: {first['model']} ({first['pretrained'] or 'random weights'})"), soft_wrap=True
    )
    table = Table()
    for column in ("dataset", "images", "classes", "top-1", "top-5", "mean per-class recall", "unreadable"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for doc in docs:
        metrics = doc["metrics"]
        table.add_row(
            escape(doc["dataset"]),
            str(doc["num_samples"]),
            str(doc["num_classes"]),
            _percent(metrics["top1"]),
            _percent(metrics["top5"]),
            _percent(metrics["mean_per_class_recall"]),
            str(doc["num_unreadable"]),
        )
    out.print(table)


def print_notes(docs: list[dict[str, Any]]) -> None:
    from rich.markup import escape

    for doc in docs:
        if doc.get("num_unreadable"):
            first = doc["unreadable"][0] if doc.get("unreadable") else None
            detail = f" (first: {escape(first[0])}: {escape(first[1])})" if first else ""
            err.print(
                f"[yellow]note:[/] {doc['dataset']}: skipped {doc['num_unreadable']} unreadable image(s){detail}",
                soft_wrap=True,
            )
        if doc.get("num_skipped_files"):
            err.print(
                f"[yellow]note:[/] {doc['dataset']}: ignored {doc['num_skipped_files']} file(s) that are not images",
                soft_wrap=True,
            )
        if doc.get("empty_classes"):
            shown = ", ".join(doc["empty_classes"][:5]) + (", ..." if len(doc["empty_classes"]) > 5 else "")
            err.print(
                f"[yellow]note:[/] {doc['dataset']}: {len(doc['empty_classes'])} class folder(s) hold no images "
                f"({escape(shown)})",
                soft_wrap=True,
            )


def register(app: typer.Typer) -> None:
    @app.command("zeroshot")
    def zeroshot(
        model: str = typer.Option(
            ..., "--model", help="Model name (see `clipctl models list`) or config JSON."
        ),
        pretrained: str = typer.Option(
            ..., "--pretrained", help="Pretrained tag or weights file; 'none' for random weights."
        ),
        imagenet_val: Path = typer.Option(
            None,
            "--imagenet-val",
            help="ImageNet validation set in ImageFolder layout (1000 synset folders).",
        ),
        imagenet_v2: Path = typer.Option(
            None, "--imagenet-v2", help="ImageNet-V2 folder (class folders 0 ... 999, as it ships)."
        ),
        data: Path = typer.Option(
            None,
            "--data",
            help="Any ImageFolder (DIR/<class>/<image>), or a CLIP_benchmark wds dataset folder.",
        ),
        classnames: Path = typer.Option(
            None,
            "--classnames",
            help="With --data: one class name per line, in the folder's sorted class order.",
        ),
        templates: str = typer.Option(
            None,
            "--templates",
            help="openai | simple | FILE (one template per line, {c} or {} for the class name)  "
            "\\[default: a CLIP_benchmark dataset's own, else openai]",
            show_default=False,
        ),
        out_path: Path = typer.Option(
            None, "--out", "-o", help="Results JSON ({dataset} in the name: one per dataset)."
        ),
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
        """Zero-shot classification accuracy: top-1, top-5 and mean per-class recall."""
        from clipctl.eval.results import write_results
        from clipctl.eval.zeroshot_job import ZeroShotOptions, zeroshot_documents

        docs = zeroshot_documents(
            ZeroShotOptions(
                model,
                pretrained,
                data=data,
                classnames=classnames,
                templates=templates,
                imagenet_val=imagenet_val,
                imagenet_v2=imagenet_v2,
                split=split,
                out=out_path,
                format=fmt,
                overwrite=overwrite,
                batch_size=batch_size,
                workers=workers,
                device=device,
                precision=precision,
                progress=not quiet,
            )
        )
        print_notes(docs)
        print_classification_table(docs)
        if out_path is not None:
            write_results(out_path, docs, fmt, overwrite=overwrite)
            print_written(out_path, docs, fmt)


def print_written(out_path: Path, docs: list[dict[str, Any]], fmt: str) -> None:
    from rich.markup import escape

    from clipctl.eval.results import output_paths

    paths = output_paths(out_path, [d["dataset"] for d in docs], fmt)
    err.print(f"results written to {escape(', '.join(str(p) for p in paths))}", soft_wrap=True)
