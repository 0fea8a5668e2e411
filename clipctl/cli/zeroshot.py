"""`clipctl zeroshot`: zero-shot top-1/top-5/mean per-class recall on ImageNet, ImageNet-V2 or any ImageFolder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clipctl.cli import options
from clipctl.cli.console import err, out


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def print_classification_table(docs: list[dict[str, Any]], title: str | None = None) -> None:
    """Top-1, top-5 and mean per-class recall per dataset (zero-shot, or ``title`` for other classifiers)."""
    from rich.markup import escape
    from rich.table import Table

    first = docs[0]
    title = title or f"zero-shot: {first['model']} ({first['pretrained'] or 'random weights'})"
    out.print(escape(title), soft_wrap=True)
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
        model: str = options.model(),
        pretrained: str = options.pretrained(),
        imagenet_val: Path = typer.Option(
            None,
            "--imagenet-val",
            help="ImageNet validation set in ImageFolder layout (1000 synset folders).",
        ),
        imagenet_v2: Path = typer.Option(
            None, "--imagenet-v2", help="ImageNet-V2 folder (class folders 0 ... 999, as it ships)."
        ),
        data: Path = options.classification_data(),
        classnames: Path = options.classnames(),
        templates: str = options.templates(),
        out_path: Path = typer.Option(
            None, "--out", "-o", help="Results JSON ({dataset} in the name: one per dataset)."
        ),
        fmt: str = options.results_format(),
        batch_size: int = options.batch_size(),
        workers: int = options.loader_workers(),
        device: str = options.device(),
        precision: str = options.eval_precision(),
        split: str = options.wds_split(),
        overwrite: bool = options.overwrite_results(),
        quiet: bool = options.quiet(),
    ) -> None:
        """Zero-shot classification accuracy: top-1, top-5 and mean per-class recall."""
        from clipctl.cli.results import save_results
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
                **options.evaluation_settings(fmt, overwrite, batch_size, workers, device, precision, quiet),
            )
        )
        print_notes(docs)
        print_classification_table(docs)
        save_results(out_path, docs, fmt, overwrite)
