"""The only files `clipctl serve` sends: images of indexed rows, looked up by row id, never by a path from the
request.

The index records each row's image as an absolute, symlink-free path when it is built. A file is sent only if
resolving that path now gives the same path (so an indexed file later replaced by a symlink, or a folder on
the way swapped for one, is refused), it is a regular file, and Pillow recognises it as an image.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path

from clipctl.search.index import SearchIndex

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
MAX_SOURCE_PIXELS = 100_000_000  # thumbnails are not made of images larger than this


def indexed_file(index: SearchIndex, row_id: int) -> Path | None:
    """The image file of ``row_id`` if it is still the file that was indexed, else None."""
    recorded = index.file_of(row_id)
    if not recorded:
        return None
    try:
        current = os.path.realpath(recorded, strict=True)
    except (OSError, ValueError):
        return None
    if current != recorded or not os.path.isfile(current):
        return None
    return Path(current)


def image_media_type(path: Path) -> str | None:
    """The media type of an image file Pillow can read (header only), else None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return MEDIA_TYPES.get(image.format or "", "application/octet-stream")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def make_thumbnail(path: Path, size: int) -> bytes | None:
    """A JPEG no larger than ``size`` on either side, or None if the file is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_SOURCE_PIXELS:
                return None
            image.draft("RGB", (size, size))  # JPEGs decode at a reduced scale: much faster for big photos
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=85)
            return buffer.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


class ThumbnailCache:
    """Recently made thumbnails, keyed by file, modification time and size (a changed file is redone)."""

    def __init__(self, entries: int = 4096):
        self.entries = entries
        self._items: OrderedDict[tuple, bytes | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, size: int) -> bytes | None:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = make_thumbnail(path, size)
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return data
