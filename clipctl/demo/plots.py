"""The demo's two pictures, drawn with PIL alone (helpers in ``clipctl.drawing``): the training-loss curve and a
grid of held-out images labelled with the class the trained model predicts for each.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from clipctl.drawing import BACKGROUND as _BACKGROUND
from clipctl.drawing import GRID as _GRID
from clipctl.drawing import INK as _INK
from clipctl.drawing import font as _font
from clipctl.drawing import nice_ticks as _nice_ticks
from clipctl.drawing import save_png_atomic as _save_png_atomic
from clipctl.drawing import text_width as _text_width
from clipctl.drawing import tick_label as _tick_label

_CURVE = (31, 119, 180)
_RIGHT = (20, 130, 50)
_WRONG = (200, 30, 30)


def plot_loss_curve(
    steps: Sequence[int],
    losses: Sequence[float],
    path: str | os.PathLike,
    *,
    title: str = "training loss",
    size: tuple[int, int] = (720, 420),
) -> Path:
    """A line plot of ``losses`` against ``steps`` with labelled axes, saved as a PNG at ``path``."""
    if len(steps) != len(losses) or not steps:
        raise ValueError("plot_loss_curve needs the same, non-zero number of steps and losses")
    width, height = size
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, title_font = _font(13), _font(16)
    left, right, top, bottom = 64, 20, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom

    x_low, x_high = float(min(steps)), float(max(steps))
    if x_high == x_low:
        x_high = x_low + 1
    y_low, y_high = min(losses), max(losses)
    pad = 0.05 * (y_high - y_low) or 0.5
    y_low, y_high = max(0.0, y_low - pad), y_high + pad

    def to_xy(step: float, loss: float) -> tuple[float, float]:
        x = left + (step - x_low) / (x_high - x_low) * plot_w
        y = top + (1 - (loss - y_low) / (y_high - y_low)) * plot_h
        return x, y

    for tick in _nice_ticks(y_low, y_high):
        _, y = to_xy(x_low, tick)
        draw.line([(left, y), (left + plot_w, y)], fill=_GRID)
        label = _tick_label(tick)
        draw.text((left - 6 - _text_width(draw, label, font), y - 7), label, fill=_INK, font=font)
    for tick in _nice_ticks(x_low, x_high):
        x, _ = to_xy(tick, y_low)
        draw.line([(x, top), (x, top + plot_h)], fill=_GRID)
        label = _tick_label(tick)
        draw.text((x - _text_width(draw, label, font) / 2, top + plot_h + 6), label, fill=_INK, font=font)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=_INK)

    points = [to_xy(s, v) for s, v in zip(steps, losses, strict=True)]
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_CURVE)
    else:
        draw.line(points, fill=_CURVE, width=2, joint="curve")

    draw.text(((width - _text_width(draw, title, title_font)) / 2, 10), title, fill=_INK, font=title_font)
    x_label = "step"
    draw.text(((width - _text_width(draw, x_label, font)) / 2, height - 22), x_label, fill=_INK, font=font)
    draw.text((8, top - 20), "loss", fill=_INK, font=font)
    return _save_png_atomic(image, Path(path))


@dataclass(frozen=True)
class LabelledImage:
    """One tile of the prediction grid."""

    path: str
    true_class: str
    predicted_class: str

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted_class


def plot_prediction_grid(
    items: Sequence[LabelledImage],
    path: str | os.PathLike,
    *,
    columns: int = 4,
    tile: int = 128,
    title: str = "held-out images: predicted class (green right, red wrong)",
) -> Path:
    """Each image scaled to ``tile`` pixels, its predicted class below it (and the true one when wrong)."""
    if not items:
        raise ValueError("plot_prediction_grid needs at least one image")
    columns = max(1, min(columns, len(items)))
    rows = math.ceil(len(items) / columns)
    font, title_font = _font(12), _font(14)
    gap, caption_h, title_h = 10, 34, 30
    width = max(columns * (tile + gap) + gap, 360)
    height = title_h + rows * (tile + caption_h + gap) + gap
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text(((width - _text_width(draw, title, title_font)) / 2, 8), title, fill=_INK, font=title_font)
    for index, item in enumerate(items):
        row, col = divmod(index, columns)
        x = gap + col * (tile + gap)
        y = title_h + row * (tile + caption_h + gap)
        with Image.open(item.path) as source:
            # Nearest keeps the 48-64 px originals crisp instead of blurring them up.
            thumb = source.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST)
        image.paste(thumb, (x, y))
        colour = _RIGHT if item.correct else _WRONG
        draw.rectangle([x - 2, y - 2, x + tile + 1, y + tile + 1], outline=colour, width=2)
        draw.text((x, y + tile + 4), item.predicted_class, fill=colour, font=font)
        if not item.correct:
            draw.text((x, y + tile + 18), f"(is {item.true_class})", fill=_INK, font=font)
    return _save_png_atomic(image, Path(path))
