"""`clipctl index`: build (or --append to) a search index over `clipctl embed` output."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli import options
from clipctl.cli.console import err, out


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index(
        src: Path = typer.Argument(
            ...,
            help="Embeddings: a Parquet file from `clipctl embed`, or a clip-retrieval folder "
            "(img_emb/ or text_emb/ + metadata/).",
            show_default=False,
        ),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Index folder to create (or to --append to)."),
        append: bool = typer.Option(
            False, "--append", help="Add the rows of SRC the index does not hold yet (no retraining)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index in --out."),
        max_index_memory: str = typer.Option(
            "4G",
            "--max-index-memory",
            help="Memory the index may use at query time (e.g. 512M, 16G); decides exact vs approximate "
            "and how much approximate indexes compress.",
        ),
        exact_below: int = typer.Option(
            100_000, "--exact-below", help="Search exactly when there are fewer vectors than this."
        ),
        target_recall: float = typer.Option(
            0.95, "--target-recall", help="Approximate indexes: recall@10 that nprobe is tuned to reach."
        ),
        modality: str = typer.Option(
            None, "--modality", help="image | text: which embeddings of a clip-retrieval folder holding both."
        ),
        model: str = typer.Option(
            None, "--model", help="Model of embeddings made by another tool (clipctl's own record it)."
        ),
        pretrained: str = typer.Option(
            None, "--pretrained", help="Pretrained tag or weights file, likewise."
        ),
        quiet: bool = options.quiet(),
    ) -> None:
        """Build a search index (exact, or faiss IVF with exact re-ranking for large collections)."""
        from clipctl.errors import ClipctlError

        if append and overwrite:
            raise ClipctlError("--append adds to an index and --overwrite replaces it; pick one")
        if modality is not None and modality not in ("image", "text"):
            raise ClipctlError(f"--modality must be image or text, got {modality!r}")
        from clipctl.search import IndexOptions, append_index, build_index

        index_options = IndexOptions(
            max_index_memory=max_index_memory,
            exact_below=exact_below,
            target_recall=target_recall,
            modality=modality,
            model=model,
            pretrained=pretrained,
            overwrite=overwrite,
            progress=not quiet,
        )
        summary = (append_index if append else build_index)(src, out_dir, index_options)
        _print_summary(summary)


def _print_summary(summary) -> None:  # noqa: ANN001 - IndexSummary, imported lazily
    from rich.markup import escape

    from clipctl.search.planner import format_bytes

    verb = "added" if summary.appended else "indexed"
    line = f"{verb} {summary.added:,} vectors; {escape(summary.out)} holds {summary.total:,}"
    if summary.skipped_known:
        line += f" ({summary.skipped_known:,} already in it)"
    out.print(line, soft_wrap=True)
    if summary.kind == "exact":
        out.print(f"exact search: {escape(summary.reason)}", soft_wrap=True)
    else:
        out.print(
            f"approximate: {summary.factory}, nprobe {summary.nprobe}, expected recall@10 "
            f"{summary.expected_recall:.3f} (measured on {summary.recall_sample} sample queries)",
            soft_wrap=True,
        )
    out.print(
        f"index memory {format_bytes(summary.memory_bytes)}, vectors on disk {format_bytes(summary.vectors_bytes)} "
        f"(memory-mapped); {summary.seconds:.1f} s",
        soft_wrap=True,
    )
    if summary.skipped_invalid:
        err.print(
            f"[yellow]note:[/] {summary.skipped_invalid:,} rows with null or non-finite embeddings skipped"
        )
    if summary.duplicates:
        err.print(f"[yellow]note:[/] {summary.duplicates:,} rows repeat an earlier row's key; kept the first")
    if summary.missing_files:
        err.print(
            f"[yellow]note:[/] {summary.missing_files:,} image files were not found; those rows are "
            "searchable but have no thumbnails",
            soft_wrap=True,
        )
    for note in summary.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
