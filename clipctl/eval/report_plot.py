"""The bar plot of `clipctl eval report --plot fig.png`: one group of bars per dataset (and the average), one
bar per model, labelled with its value, drawn with PIL (``clipctl.drawing``)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw

from clipctl.drawing import (
    BACKGROUND,
    GRID,
    INK,
    PALETTE,
    font,
    nice_ticks,
    save_png_atomic,
    text_width,
    tick_label,
)
from clipctl.errors import ClipctlError
from clipctl.eval.report import ResultTable

BAR_WIDTH, GROUP_GAP, PLOT_HEIGHT = 22, 26, 320
LEFT, RIGHT, TOP = 60, 24, 46
AXIS_LABELS, LEGEND_ROW, MIN_WIDTH = 40, 22, 480


def _groups(table: ResultTable) -> list[tuple[str, list[float | None]]]:
    groups = [
        (table.column_label(c), [table.values.get((row, c)) for row in table.rows]) for c in table.columns
    ]
    averages = [table.average(row) for row in table.rows]
    if any(a is not None for a in averages):
        groups.append(("average", averages))
    return groups


def _shorten(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _y(percent: float) -> float:
    return TOP + PLOT_HEIGHT * (1 - percent / 100.0)


def _axes(draw: ImageDraw.ImageDraw, width: int) -> None:
    label_font = font(13)
    for tick in nice_ticks(0, 100.0, 6):
        draw.line([(LEFT, _y(tick)), (width - RIGHT, _y(tick))], fill=GRID)
        text = tick_label(tick)
        draw.text(
            (LEFT - 6 - text_width(draw, text, label_font), _y(tick) - 7), text, fill=INK, font=label_font
        )
    draw.line([(LEFT, _y(0)), (width - RIGHT, _y(0))], fill=INK)
    draw.text((8, TOP - 24), "%", fill=INK, font=label_font)


def _bars(
    draw: ImageDraw.ImageDraw, groups: list[tuple[str, list[float | None]]], group_width: float
) -> None:
    label_font, small = font(13), font(10)
    for g, (name, values) in enumerate(groups):
        x0 = LEFT + g * group_width + (group_width - BAR_WIDTH * len(values)) / 2
        for r, value in enumerate(values):
            if value is None:
                continue
            x, top = x0 + r * BAR_WIDTH, _y(100 * value)
            draw.rectangle([x, top, x + BAR_WIDTH - 3, _y(0)], fill=PALETTE[r % len(PALETTE)])
            text = f"{100 * value:.0f}"
            draw.text(
                (x + (BAR_WIDTH - 3 - text_width(draw, text, small)) / 2, top - 12),
                text,
                fill=INK,
                font=small,
            )
        shown = _shorten(name)
        centre = LEFT + (g + 0.5) * group_width
        draw.text(
            (centre - text_width(draw, shown, label_font) / 2, _y(0) + 8), shown, fill=INK, font=label_font
        )


def _legend(draw: ImageDraw.ImageDraw, labels: list[str], top: float) -> None:
    label_font = font(13)
    for r, label in enumerate(labels):
        y = top + LEGEND_ROW * r
        draw.rectangle([LEFT, y + 2, LEFT + 14, y + 16], fill=PALETTE[r % len(PALETTE)])
        draw.text((LEFT + 22, y), label, fill=INK, font=label_font)


def check_plot_path(path: str | os.PathLike) -> None:
    if Path(path).suffix.lower() != ".png":
        raise ClipctlError(f"--plot {path}: the plot is a PNG; end the name with .png")


def plot_table(table: ResultTable, path: str | os.PathLike, *, title: str = "") -> Path:
    """A PNG at ``path`` (which must end in .png); values are percentages on a 0-100 axis."""
    check_plot_path(path)
    groups = _groups(table)
    labels = [f"{model} ({pretrained})" for model, pretrained in table.rows]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest_name = max(text_width(measure, _shorten(name), font(13)) for name, _ in groups)
    group_width = max(BAR_WIDTH * len(table.rows), widest_name) + GROUP_GAP
    group_width = max(group_width, (MIN_WIDTH - LEFT - RIGHT) / len(groups))
    widest_label = max((text_width(measure, label, font(13)) for label in labels), default=0)
    width = int(max(LEFT + RIGHT + group_width * len(groups), LEFT + 22 + widest_label + RIGHT))
    height = TOP + PLOT_HEIGHT + AXIS_LABELS + LEGEND_ROW * len(labels) + 10
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    _axes(draw, width)
    _bars(draw, groups, group_width)
    _legend(draw, labels, TOP + PLOT_HEIGHT + AXIS_LABELS)
    heading = title or table.metric_legend().split(" (%)")[0]
    draw.text(((width - text_width(draw, heading, font(15))) / 2, 12), heading, fill=INK, font=font(15))
    return save_png_atomic(image, path)
