"""`clipctl search`: one text or image query against an index, as a table or JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli import options
from clipctl.cli.console import out


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(
        index_dir: Path = typer.Argument(..., help="Index folder from `clipctl index`.", show_default=False),
        text: str = typer.Option(None, "--text", "-t", help="Find rows matching this text."),
        image: Path = typer.Option(None, "--image", "-i", help="Find rows similar to this image."),
        k: int = typer.Option(20, "-k", "--top-k", help="Number of results."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        device: str = options.device("Where to embed the query: cpu, cuda, cuda:N or mps."),
        model: str = typer.Option(
            None, "--model", help="The index's model as a config file (when it records only a name)."
        ),
        pretrained: str = typer.Option(
            None, "--pretrained", help="Where the index's weights file is now, if it has moved."
        ),
        nprobe: int = options.nprobe(),
        exact: bool = typer.Option(False, "--exact", help="Scan every vector, even in an approximate index."),
    ) -> None:
        """Search an index with a text or an image; queries are embedded with the index's own model."""
        from clipctl.errors import ClipctlError

        if (text is None) == (image is None):
            raise ClipctlError("give one query: --text TEXT or --image PATH")
        if k < 1:
            raise ClipctlError(f"-k must be at least 1, got {k}")
        from clipctl.search import Searcher

        searcher = Searcher(index_dir, device=device, model=model, pretrained=pretrained)
        hits = searcher.search(text=text, image=image, k=k, nprobe=nprobe, exact=exact)
        if as_json:
            import json

            query = {"text": text} if text is not None else {"image": str(image)}
            print(
                json.dumps({"index": str(index_dir), "query": query, "results": [h.to_dict() for h in hits]})
            )
            return
        _print_table(hits)


def _print_table(hits) -> None:  # noqa: ANN001 - list[Hit], imported lazily
    from rich.table import Table

    if not hits:
        out.print("no results")
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    with_paths = any(h.file or not h.caption for h in hits)
    if with_paths:
        table.add_column("path", overflow="fold")
    if any(h.caption for h in hits):
        table.add_column("caption", overflow="fold")
    for hit in hits:
        cells = [str(hit.rank), f"{hit.score:.4f}"]
        if with_paths:
            cells.append(str(hit.file or hit.key))
        if any(h.caption for h in hits):
            cells.append(hit.caption or "")
        table.add_row(*cells)
    out.print(table)
