"""What `clipctl embed` reads: an image folder (recursive), a list file of image paths, webdataset shards,
or a text file of captions.

Each input gets a stable key, the value stored in the output's key column, so that a re-run can tell what is
already embedded: the path relative to the folder, the line of the list file as written, the sample key in a
shard, or the line number of a caption.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from clipctl.errors import ClipctlError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageItem:
    key: str  # what the output stores (and what resume compares)
    location: str  # where to read it from


@dataclass
class ImageSource:
    """A folder or list file (``items``) or a set of webdataset shards (``shards``)."""

    kind: str  # "folder" | "list" | "shards"
    root: str
    items: list[ImageItem] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)

    @property
    def key_column(self) -> str:
        return "key" if self.kind == "shards" else "path"

    def count_hint(self) -> int | None:
        """Number of inputs when known up front (shards only know it from a ``sizes.json``)."""
        if self.kind != "shards":
            return len(self.items)
        return _count_from_sizes_json(self.shards)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def open_image_source(src: str | os.PathLike) -> ImageSource:
    """Work out what ``src`` is and list its inputs; a missing or empty source is a one-line error."""
    text = str(src)
    if "{" in text or text.endswith(".tar"):
        return ImageSource("shards", text, shards=_expand_shards(text))
    path = Path(text).expanduser()
    if not path.exists():
        raise ClipctlError(f"{text}: no such file or folder")
    if path.is_dir():
        items = _folder_items(path)
        if items:
            return ImageSource("folder", str(path.resolve()), items=items)
        tars = sorted(str(p) for p in path.glob("*.tar"))
        if tars:
            return ImageSource("shards", str(path.resolve()), shards=tars)
        raise ClipctlError(
            f"no images found in {text} (looked recursively for {', '.join(IMAGE_EXTENSIONS)}, and for *.tar shards)"
        )
    return ImageSource("list", str(path.resolve().parent), items=_list_file_items(path))


def _folder_items(folder: Path) -> list[ImageItem]:
    items = []
    for dirpath, dirnames, filenames in os.walk(folder):
        # Hidden folders (.git, .ipynb_checkpoints, ...) hold no images the user means.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and is_image_name(name):
                full = os.path.join(dirpath, name)
                items.append(ImageItem(Path(full).relative_to(folder).as_posix(), full))
    items.sort(key=lambda item: item.key)
    return items


def _list_file_items(list_file: Path) -> list[ImageItem]:
    """One path per line; relative paths are relative to the list file's folder. Blank lines and # comments skip."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ClipctlError(
            f"{list_file} is not a text list of image paths (pass a folder, a list file or shards)"
        ) from None
    except OSError as err:
        raise ClipctlError(f"cannot read {list_file}: {err.strerror or err}") from None
    base = list_file.resolve().parent
    items, seen = [], set()
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#") or entry in seen:
            continue
        seen.add(entry)
        location = Path(entry).expanduser()
        items.append(ImageItem(entry, str(location if location.is_absolute() else base / location)))
    if not items:
        raise ClipctlError(f"list file {list_file} names no images (one path per line)")
    return items


def _expand_shards(spec: str) -> list[str]:
    from braceexpand import braceexpand

    shards = [s for part in spec.split("::") for s in braceexpand(part)]
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ClipctlError(f"shard {missing[0]} does not exist{more}")
    if not shards:
        raise ClipctlError(f"{spec} names no shards")
    return shards


def _count_from_sizes_json(shards: list[str]) -> int | None:
    total = 0
    cache: dict[str, dict] = {}
    for shard in shards:
        folder = os.path.dirname(os.path.abspath(shard))
        if folder not in cache:
            try:
                with open(os.path.join(folder, "sizes.json"), encoding="utf-8") as f:
                    cache[folder] = json.load(f)
            except (OSError, ValueError):
                return None
        size = cache[folder].get(os.path.basename(shard))
        if not isinstance(size, int):
            return None
        total += size
    return total


def shard_sample_key(member_name: str) -> tuple[str, str]:
    """``dir/000012.jpg`` -> (``dir/000012``, ``.jpg``): the webdataset key is everything before the first dot of the
    file name."""
    folder, _, base = member_name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + ext).lower()


def read_caption_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """``(line number, caption)`` for each non-blank line of a UTF-8 text file (line numbers start at 0)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ClipctlError(f"{path}: no such file")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ClipctlError(f"{path} is not UTF-8 text (one caption per line)") from None
    captions = [(i, line.strip()) for i, line in enumerate(lines) if line.strip()]
    if not captions:
        raise ClipctlError(f"{path} holds no captions (one per line)")
    return captions
