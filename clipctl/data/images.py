"""Reading local images for shards: verify they decode, keep their bytes, or resize and re-encode them.

Resize modes are img2dataset's: ``no`` (keep the size), ``keep_ratio`` (shorter side to ``image_size``),
``keep_ratio_largest`` (longer side to ``image_size``), ``center_crop`` (shorter side to ``image_size``, then a
centred square crop) and ``border`` (longer side to ``image_size``, then padded with black to a square).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

RESIZE_MODES = ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Formats written as they are; OpenCLIP's webdataset loader accepts jpg, png and webp members.
_KEPT_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")


class UnreadableImage(Exception):
    """The file is missing, unreadable, or does not decode as an image."""


@dataclass
class EncodedImage:
    data: bytes
    ext: str
    width: int
    height: int
    original_width: int
    original_height: int


def _resized(image: Image.Image, image_size: int, mode: str) -> Image.Image:
    w, h = image.size
    if mode == "no":
        return image
    if mode in ("keep_ratio", "center_crop"):
        scale = image_size / min(w, h)
    else:  # keep_ratio_largest, border
        scale = image_size / max(w, h)
    new_size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BOX
    image = image.resize(new_size, resample)
    if mode == "center_crop":
        left = (new_size[0] - image_size) // 2
        top = (new_size[1] - image_size) // 2
        image = image.crop((left, top, left + image_size, top + image_size))
    elif mode == "border":
        canvas = Image.new("RGB", (image_size, image_size), (0, 0, 0))
        canvas.paste(image, ((image_size - new_size[0]) // 2, (image_size - new_size[1]) // 2))
        image = canvas
    return image


def encode_image_file(
    data: bytes, image_size: int | None = None, resize_mode: str = "border", quality: int = 95
) -> EncodedImage:
    """Check that ``data`` decodes; keep it as is (``image_size=None``) or resize and re-encode to JPEG.

    Kept images stay in their format when it is JPEG, PNG or WebP; other formats (BMP, ...) become PNG, losslessly.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
            image.load()
            original_size = image.size
            if image_size is None and fmt in _KEPT_FORMATS:
                w, h = original_size
                return EncodedImage(data, _KEPT_FORMATS[fmt], w, h, w, h)
            if image_size is None:
                decoded = image.copy() if image.mode in _PNG_MODES else image.convert("RGB")
            else:
                decoded = _resized(image.convert("RGB"), image_size, resize_mode)
    except UnidentifiedImageError as err:  # its message holds an object address: not reproducible
        raise UnreadableImage("unknown image format") from err
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UnreadableImage(str(err) or type(err).__name__) from err
    buf = io.BytesIO()
    if image_size is None:
        decoded.save(buf, format="PNG")
        ext = "png"
    else:
        decoded.save(buf, format="JPEG", quality=quality)
        ext = "jpg"
    return EncodedImage(buf.getvalue(), ext, decoded.width, decoded.height, *original_size)
