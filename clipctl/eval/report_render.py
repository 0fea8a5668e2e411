"""A :class:`~clipctl.eval.report.ResultTable` written as Markdown, CSV or a standalone HTML page (chosen by the
output's extension), atomically. Numbers are percentages: two decimals in Markdown and HTML, four in CSV."""

from __future__ import annotations

import csv
import html
import io
import os
from pathlib import Path

from clipctl.errors import ClipctlError
from clipctl.eval.report import ResultTable

FORMATS = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".html": "html", ".htm": "html"}


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ClipctlError(
            f"--out {path}: unknown table format {suffix or '(no extension)'!r}; end the name with .md, .csv or .html"
        )
    return FORMATS[suffix]


def _cells(table: ResultTable, decimals: int) -> list[list[str]]:
    """Header row, then one row per model: model, pretrained, one cell per dataset, average."""
    header = ["model", "pretrained", *(table.column_label(c) for c in table.columns), "average"]
    rows = [header]
    for row in table.rows:
        values = [table.values.get((row, c)) for c in table.columns] + [table.average(row)]
        rows.append([*row, *("" if v is None else f"{100 * v:.{decimals}f}" for v in values)])
    return rows


def render_markdown(table: ResultTable) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    cells = _cells(table, 2)
    lines = ["| " + " | ".join(escape(c) for c in cells[0]) + " |"]
    lines.append("| --- | --- | " + " | ".join("---:" for _ in cells[0][2:]) + " |")
    lines += ["| " + " | ".join(escape(c) or "-" for c in row) + " |" for row in cells[1:]]
    return "\n".join(lines) + f"\n\n{table.metric_legend()}\n"


def render_csv(table: ResultTable) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(_cells(table, 4))
    return buffer.getvalue()


def render_html(table: ResultTable) -> str:
    cells = _cells(table, 2)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
    body = "\n".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i > 1 else ''}>{html.escape(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in cells[1:]
    )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:4px 8px}th{background:#f3f3f3}td.num{text-align:right}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>clipctl results</title>'
        f"<style>{style}</style></head><body>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n"
        f"</table>\n<p>{html.escape(table.metric_legend())}</p>\n</body></html>\n"
    )


def write_table(table: ResultTable, path: str | os.PathLike) -> Path:
    from clipctl.fileio import write_bytes_atomic

    renderer = {"markdown": render_markdown, "csv": render_csv, "html": render_html}[output_format(path)]
    return write_bytes_atomic(path, renderer(table).encode("utf-8"))
