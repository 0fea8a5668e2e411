"""Drawing and describing one synthetic image: a coloured shape on a plain, noisy or textured background.

Every random choice comes from the ``numpy.random.Generator`` passed in, so an image is a pure function of its
generator's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Hues far enough apart to be told apart at 64 px through JPEG, plus white and black.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 220),
    "yellow": (240, 215, 35),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
    "black": (18, 18, 18),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "round shape", "disc"),
    "square": ("square", "box", "square shape"),
    "triangle": ("triangle", "triangular shape", "three-sided shape"),
    "star": ("star", "star shape", "five-pointed star"),
}
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "noisy", "gradient", "striped", "checkered")
_GREYS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "dark": (62, 62, 62),
    "light": (192, 192, 192),
}
# A background colour must differ from the shape's by at least this RGB distance.
_MIN_BACKGROUND_DISTANCE = 110.0
_SUPERSAMPLE = 4  # shapes are drawn larger and scaled down, for anti-aliased edges
_JITTER = 12  # per-channel variation of a shape's colour


@dataclass(frozen=True)
class ShapeScene:
    """What was drawn, for writing captions and metadata."""

    colour: str
    shape: str
    size_fraction: float  # bounding-circle diameter / image side
    centre: tuple[float, float]  # in [0, 1] image coordinates
    background_kind: str
    background_tone: str  # "grey", "dark", "light" or "tinted"


def class_name(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


def _background_colours(shape_rgb: tuple[int, int, int]) -> list[tuple[str, tuple[int, int, int]]]:
    grey = np.array(_GREYS["grey"], dtype=float)
    candidates = list(_GREYS.items())
    for rgb in COLOURS.values():
        # Other palette colours, washed out towards grey so they read as "background".
        candidates.append(("tinted", tuple(int(v) for v in (0.45 * np.array(rgb) + 0.55 * grey).round())))
    target = np.array(shape_rgb, dtype=float)
    return [
        (tone, rgb)
        for tone, rgb in candidates
        if np.linalg.norm(np.array(rgb) - target) >= _MIN_BACKGROUND_DISTANCE
    ]


def _draw_background(rng: np.random.Generator, size: int, kind: str, rgb: tuple[int, int, int]) -> np.ndarray:
    base = np.broadcast_to(np.array(rgb, dtype=np.float32), (size, size, 3)).copy()
    if kind == "noisy":
        base += rng.normal(0.0, 14.0, size=(size, size, 1)).astype(np.float32)
    elif kind == "gradient":
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        field = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
        base += 28.0 * field[..., None]
    elif kind == "striped":
        period = int(rng.integers(4, 10))
        vertical = bool(rng.integers(0, 2))
        coords = np.arange(size)
        band = ((coords // period) % 2).astype(np.float32)
        stripes = band[None, :] if vertical else band[:, None]
        base += (22.0 * (2 * stripes - 1))[..., None]
    elif kind == "checkered":
        period = int(rng.integers(4, 12))
        coords = np.arange(size) // period
        checks = ((coords[None, :] + coords[:, None]) % 2).astype(np.float32)
        base += (20.0 * (2 * checks - 1))[..., None]
    return base.clip(0, 255).astype(np.uint8)


def _shape_polygon(
    shape: str, cx: float, cy: float, radius: float, angle: float
) -> list[tuple[float, float]]:
    if shape == "square":
        corners, radii = 4, [radius]
    elif shape == "triangle":
        corners, radii = 3, [radius]
    elif shape == "star":
        corners, radii = 10, [radius, 0.45 * radius]
    else:
        raise ValueError(f"no polygon for {shape}")
    points = []
    for i in range(corners):
        theta = angle + 2 * math.pi * i / corners - math.pi / 2
        r = radii[i % len(radii)]
        points.append((cx + r * math.cos(theta), cy + r * math.sin(theta)))
    return points


def _shape_mask(shape: str, size: int, cx: float, cy: float, radius: float, angle: float) -> Image.Image:
    big = size * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    s = _SUPERSAMPLE
    if shape == "circle":
        draw.ellipse([(cx - radius) * s, (cy - radius) * s, (cx + radius) * s, (cy + radius) * s], fill=255)
    else:
        draw.polygon([(x * s, y * s) for x, y in _shape_polygon(shape, cx, cy, radius, angle)], fill=255)
    return mask.resize((size, size), Image.Resampling.BOX)


def draw_scene(
    rng: np.random.Generator, size: int, colour: str, shape: str
) -> tuple[Image.Image, ShapeScene]:
    """Draw ``colour`` ``shape`` at a random size, position and rotation on a random background."""
    shape_rgb = COLOURS[colour]
    choices = _background_colours(shape_rgb)
    tone, bg_rgb = choices[int(rng.integers(0, len(choices)))]
    kind = BACKGROUND_KINDS[int(rng.integers(0, len(BACKGROUND_KINDS)))]
    background = _draw_background(rng, size, kind, bg_rgb)

    size_fraction = float(rng.uniform(0.3, 0.75))
    radius = size_fraction * size / 2
    cx = float(rng.uniform(radius, size - radius))
    cy = float(rng.uniform(radius, size - radius))
    # Squares look smaller than their bounding circle; scale them up so sizes read alike.
    draw_radius = radius * (1.15 if shape == "square" else 1.0)
    draw_radius = min(draw_radius, cx, cy, size - cx, size - cy) if shape == "square" else draw_radius
    angle = float(rng.uniform(0, 2 * math.pi))
    mask = _shape_mask(shape, size, cx, cy, draw_radius, angle)
    jitter = rng.integers(-_JITTER, _JITTER + 1, size=3)
    fill = tuple(int(v) for v in np.clip(np.array(shape_rgb) + jitter, 0, 255))

    image = Image.fromarray(background, mode="RGB")
    image.paste(Image.new("RGB", (size, size), fill), (0, 0), mask)
    scene = ShapeScene(colour, shape, size_fraction, (cx / size, cy / size), kind, tone)
    return image, scene


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def _size_word(scene: ShapeScene) -> str:
    if scene.size_fraction < 0.42:
        return "small"
    if scene.size_fraction > 0.62:
        return "large"
    return ""


def _position_words(scene: ShapeScene) -> str:
    x, y = scene.centre
    vertical = "top" if y < 0.4 else "bottom" if y > 0.6 else ""
    horizontal = "left" if x < 0.4 else "right" if x > 0.6 else ""
    if vertical and horizontal:
        return f"in the {vertical} {horizontal} corner"
    if vertical:
        return f"at the {vertical}"
    if horizontal:
        return f"on the {horizontal}"
    return "in the centre"


def _background_words(scene: ShapeScene) -> str:
    if scene.background_kind == "plain":
        return "grey" if scene.background_tone in ("grey", "tinted") else scene.background_tone
    return scene.background_kind


def caption_for(rng: np.random.Generator, scene: ShapeScene) -> str:
    """One of several phrasings; the colour word and a word for the shape are always in it."""
    colour = scene.colour
    shape_word = scene.shape
    if rng.random() < 0.3:
        synonyms = SHAPE_SYNONYMS[scene.shape]
        shape_word = synonyms[int(rng.integers(0, len(synonyms)))]
    size = _size_word(scene)
    thing = f"{colour} {shape_word}"
    sized = f"{size} {thing}" if size else thing
    background = _background_words(scene)
    phrasings = [
        _with_article(thing),
        f"a photo of {_with_article(thing)}",
        f"{thing} on a {background} background",
        f"{_with_article(sized)}",
        f"a picture of {_with_article(sized)} on a {background} background",
        f"{_with_article(thing)} {_position_words(scene)}",
        f"an image showing {_with_article(thing)}",
        f"the {shape_word} is {colour}",
        f"a drawing of the {sized}",
        f"there is {_with_article(sized)} here",
    ]
    return phrasings[int(rng.integers(0, len(phrasings)))]
