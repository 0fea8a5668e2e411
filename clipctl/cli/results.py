"""Writing evaluation results (``zeroshot``, ``eval retrieval``) and saying where they went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipctl.cli.console import err


def save_results(out_path: Path | None, docs: list[dict[str, Any]], fmt: str, overwrite: bool) -> None:
    """Write ``docs`` to ``out_path`` (nothing when it is None) and print the files written on stderr."""
    if out_path is None:
        return
    from rich.markup import escape

    from clipctl.eval.results import output_paths, write_results

    write_results(out_path, docs, fmt, overwrite=overwrite)
    paths = output_paths(out_path, [d["dataset"] for d in docs], fmt)
    err.print(f"results written to {escape(', '.join(str(p) for p in paths))}", soft_wrap=True)
