"""The demo's closing report, as rich renderables (the CLI prints them; tests read the plain text)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Group
from rich.text import Text

from clipctl.demo.pipeline import DemoReport


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _where(path: str) -> str:
    """Paths relative to the working folder when they are inside it: shorter, and copy-pastable."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def _times(report: DemoReport) -> str:
    seconds = report.seconds
    parts = [
        f"{name} {_duration(seconds[name])}"
        for name in ("data", "train", "zeroshot", "embed", "search")
        if name in seconds
    ]
    return ", ".join(parts)


def _row(label: str, value: str | Text) -> Text:
    return Text.assemble((f"{label:<17}", "bold"), value)


def _search_lines(report: DemoReport) -> list[Text]:
    search = report.search
    if not search:
        return []
    best = ", ".join(f"{hit['key']} ({hit['score']:.2f})" for hit in search["top"][:3])
    return [
        _row("search", f'"{search["query"]}" -> {best}'),
        _row(
            f"precision@{search['k']}",
            f"{100 * search['precision']:.1f}% mean over one text query per class "
            f"(bound from zero-shot top-1: {100 * search['bound']:.1f}%)",
        ),
    ]


def render_report(report: DemoReport) -> Group:
    """Headline numbers first (what was learnt, how fast), then where every artefact is.

    One line per item, never wrapped (print with ``soft_wrap=True``), so paths stay copy-pastable.
    """
    loss = report.loss
    top1_ratio = report.top1 / report.chance_top1 if report.chance_top1 else float("inf")
    title = Text.assemble(
        ("clipctl demo ", "bold"),
        (f"finished in {_duration(report.seconds.get('total', 0.0))}", "bold green"),
        f"  ({_times(report)})",
    )
    reused = " (reused)" if report.data_reused else ""
    lines = [
        title,
        _row(
            "data",
            f"{report.num_train:,} generated image-caption pairs, {report.num_heldout:,} held-out images "
            f"in {report.num_classes} classes{reused}",
        ),
        _row("model", f"{report.model} (recipe {report.recipe})"),
        _row("training", f"{loss.steps:,} steps, {report.samples_per_second:,.0f} samples/s"),
        _row(
            "loss",
            f"first {loss.first:.3f} -> last {loss.last:.3f} (min {loss.min:.3f} at step {loss.min_step:,})",
        ),
        _row(
            "zero-shot top-1",
            Text.assemble(
                (f"{100 * report.top1:.1f}%", "bold green" if report.top1 >= 0.9 else "bold"),
                f"  (chance {100 * report.chance_top1:.1f}%, {top1_ratio:.0f}x chance)",
            ),
        ),
        _row("zero-shot top-5", f"{100 * report.top5:.1f}%  (chance {100 * report.chance_top5:.1f}%)"),
        *_search_lines(report),
        Text(""),
        _row("run folder", _where(report.run_dir)),
        _row("checkpoint", _where(report.checkpoint)),
        _row("results JSON", _where(report.results_json)),
        _row("embeddings", f"{_where(report.embeddings_parquet)} ({report.num_embedded:,} rows)"),
        _row("loss curve", _where(report.loss_curve_png)),
        _row("predictions", _where(report.predictions_png)),
    ]
    if report.search:
        lines.append(_row("search index", _where(report.search["index_dir"])))
    lines.append(Text(""))
    data = Path(report.data_dir)
    lines.append(
        Text.assemble(
            ("try next: ", "dim"),
            f"clipctl zeroshot --model {report.model} --pretrained {_where(report.checkpoint)} "
            f"--data {_where(str(data / 'heldout'))} --classnames {_where(str(data / 'classnames.txt'))} "
            f"--templates {_where(str(data / 'templates.txt'))}",
        )
    )
    if report.search:
        index = _where(report.search["index_dir"])
        lines.append(Text.assemble(("search it:  ", "dim"), f'clipctl search {index} --text "a blue square"'))
        lines.append(
            Text.assemble(
                ("browse it:  ", "dim"), f"clipctl serve {index}  (then open http://127.0.0.1:8000/)"
            )
        )
    return Group(*lines)
