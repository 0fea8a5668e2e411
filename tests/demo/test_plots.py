"""The demo's PNGs, drawn with PIL: a loss curve that follows the data, and a labelled image grid."""

import numpy as np
import pytest
from PIL import Image

from clipctl.demo.plots import LabelledImage, plot_loss_curve, plot_prediction_grid


def _curve_pixels(path):
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blue = (
        (abs(pixels[..., 0] - 31) < 30) & (abs(pixels[..., 1] - 119) < 30) & (abs(pixels[..., 2] - 180) < 30)
    )
    return np.argwhere(blue)


def test_loss_curve_is_a_png_that_falls_where_the_loss_falls(tmp_path):
    steps = list(range(10, 510, 10))
    losses = [5.0 * 0.99**s + 0.5 for s in steps]
    path = plot_loss_curve(steps, losses, tmp_path / "loss.png", size=(400, 300))
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (400, 300)
    curve = _curve_pixels(path)
    assert len(curve) > 100
    left = curve[curve[:, 1] < curve[:, 1].min() + 20]
    right = curve[curve[:, 1] > curve[:, 1].max() - 20]
    assert left[:, 0].mean() < right[:, 0].mean()  # high loss at the start is drawn near the top


def test_loss_curve_with_one_point(tmp_path):
    assert plot_loss_curve([1], [4.2], tmp_path / "one.png").is_file()


def test_loss_curve_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError):
        plot_loss_curve([1, 2], [1.0], tmp_path / "bad.png")


def test_prediction_grid_frames_right_green_and_wrong_red(tmp_path):
    source = tmp_path / "img.png"
    Image.new("RGB", (48, 48), (128, 128, 128)).save(source)
    items = [
        LabelledImage(str(source), "red star", "red star"),
        LabelledImage(str(source), "red star", "blue star"),
    ]
    path = plot_prediction_grid(items, tmp_path / "grid.png", columns=2, tile=64)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    # frame pixels just left of each tile (gap 10, title 30): green for the right one, red for the wrong one
    assert tuple(pixels[60, 8]) == (20, 130, 50)
    assert tuple(pixels[60, 10 + 64 + 10 - 2]) == (200, 30, 30)
