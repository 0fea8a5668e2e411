"""What the evaluation jobs read.

Classification (`clipctl zeroshot`):
- an ImageFolder (``DIR/<class>/**/<image>``; classes in sorted folder order, or in numeric order when every
  folder name is a number, as ImageNet-V2's ``0`` ... ``999`` are -- a string sort would put ``10`` before ``2``);
- CLIP_benchmark's local webdataset layout (``DIR/test/{0..n-1}.tar`` with ``nshards.txt``, ``classnames.txt``,
  ``zeroshot_classification_templates.txt``; samples hold an image and a ``.cls`` label).

Retrieval (`clipctl eval retrieval`):
- a CSV/TSV of image paths and captions (rows sharing an image path are several captions of one image);
- webdataset shards (image + ``.txt``, one caption per sample);
- CLIP_benchmark's webdataset layout with ``dataset_type.txt`` = ``retrieval`` (one caption per line of ``.txt``).

Items come out as ``(tensor, label)`` / ``(tensor, captions)`` or as :class:`Unreadable`; the collate
functions set unreadable ones aside so a loop can count and report them. Nothing here is fatal after the data
has been found: a corrupt image is one skipped sample.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from clipctl.errors import ClipctlError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
WDS_IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's (and img2dataset's) member types
CB_NSHARDS = "nshards.txt"
CB_CLASSNAMES = "classnames.txt"
CB_TEMPLATES = "zeroshot_classification_templates.txt"
CB_TYPE = "dataset_type.txt"

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class Unreadable:
    """An input that could not be used: its name (path or shard key) and why."""

    name: str
    reason: str


def describe_error(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if type(err).__name__ == "UnidentifiedImageError":
        text = "not an image PIL can decode"  # PIL's message holds an object address
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def decode_rgb(source: Any) -> Image.Image:
    """Open a path or file object and decode fully (``convert`` forces it, so truncated files fail here)."""
    with Image.open(source) as image:
        return image.convert("RGB")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _visible(name: str) -> bool:
    return not name.startswith(".")


# ---- ImageFolder ---------------------------------------------------------------------------------------------


@dataclass
class ImageFolderData(Dataset):
    """An ImageFolder: ``classes`` (folder names in label order), ``samples`` (path, label)."""

    root: str
    classes: list[str]
    samples: list[tuple[str, int]]
    skipped_files: list[str] = field(default_factory=list)  # not image files (by extension); never read
    empty_classes: list[str] = field(default_factory=list)
    numeric_classes: bool = False
    transform: Transform | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        path, label = self.samples[index]
        try:
            image = decode_rgb(path)
            return (self.transform(image) if self.transform else image), label
        except Exception as err:  # noqa: BLE001 - any decoder/transform failure makes this one image unusable
            return Unreadable(os.path.relpath(path, self.root), describe_error(err))


def _class_order(names: list[str]) -> tuple[list[str], bool]:
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=lambda n: (int(n), n)), True
    return sorted(names), False


def scan_image_folder(root: str | os.PathLike, what: str = "--data") -> ImageFolderData:
    """List an ImageFolder's classes and images; a missing folder, no class folders or no images is an error."""
    path = Path(root).expanduser()
    if not path.exists():
        raise ClipctlError(f"{what} {root}: no such folder")
    if not path.is_dir():
        raise ClipctlError(f"{what} {root} is not a folder (expected one sub-folder of images per class)")
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as err:
        raise ClipctlError(f"cannot list {what} {root}: {err.strerror or err}") from None
    names = [e.name for e in entries if e.is_dir() and _visible(e.name)]
    if not names:
        loose = sum(1 for e in entries if e.is_file() and is_image_file(e.name))
        hint = (
            f"; it holds {loose} image(s) directly: put each class's images in a sub-folder named for the class"
            if loose
            else ""
        )
        raise ClipctlError(
            f"{what} {root} has no class sub-folders (ImageFolder layout: DIR/<class>/<image>){hint}"
        )
    classes, numeric = _class_order(names)
    samples: list[tuple[str, int]] = []
    skipped: list[str] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        found = 0
        for dirpath, dirnames, filenames in os.walk(path / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            for filename in sorted(filenames):
                if not _visible(filename):
                    continue
                full = os.path.join(dirpath, filename)
                if is_image_file(filename):
                    samples.append((full, label))
                    found += 1
                else:
                    skipped.append(os.path.relpath(full, path))
        if not found:
            empty.append(name)
    if not samples:
        detail = f" ({len(skipped)} other file(s) skipped)" if skipped else ""
        raise ClipctlError(
            f"{what} {root} holds no images in its {len(classes)} class folder(s){detail}; "
            f"looked for {', '.join(IMAGE_EXTENSIONS)}"
        )
    return ImageFolderData(str(path), classes, samples, skipped, empty, numeric)


def collate_classification(batch: Sequence[Any]) -> tuple[torch.Tensor | None, torch.Tensor | None, list]:
    """``(images, targets, failures)``: unreadable items become ``(name, reason)`` in ``failures``."""
    good = [item for item in batch if not isinstance(item, Unreadable)]
    failures = [(item.name, item.reason) for item in batch if isinstance(item, Unreadable)]
    if not good:
        return None, None, failures
    images = torch.stack([item[0] for item in good])
    targets = torch.tensor([int(item[1]) for item in good], dtype=torch.long)
    return images, targets, failures


# ---- webdataset shards -----------------------------------------------------------------------------------------


def _member_key(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


def iter_shard_samples(shard: str) -> Iterator[dict[str, Any] | Unreadable]:
    """Samples of one tar (dicts of extension -> bytes plus ``__key__``), in file order; a damaged tar ends
    with one :class:`Unreadable` naming the shard (samples after the damage are lost)."""
    current: dict[str, Any] | None = None
    try:
        with open(shard, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _member_key(member.name)
                if not ext or os.path.basename(key).startswith("__"):
                    continue
                data = tar.extractfile(member).read()
                if current is None or current["__key__"] != key or ext in current:
                    if current is not None:
                        yield current
                    current = {"__key__": key}
                current[ext] = data
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        yield Unreadable(os.path.basename(shard), f"damaged shard: {describe_error(err)}")
        current = None
    if current is not None:
        yield current


def _image_bytes(sample: dict[str, Any]) -> bytes | None:
    return next((sample[ext] for ext in WDS_IMAGE_EXTENSIONS if ext in sample), None)


class ShardStream(IterableDataset):
    """Shards split across DataLoader workers (worker ``i`` reads shards ``i, i+W, ...``)."""

    def __init__(self, shards: Sequence[str], transform: Transform | None):
        self.shards = list(shards)
        self.transform = transform

    def _my_shards(self) -> list[str]:
        info = get_worker_info()
        if info is None:
            return self.shards
        return self.shards[info.id :: info.num_workers]

    def _image(self, sample: dict[str, Any], name: str) -> torch.Tensor | Image.Image | Unreadable:
        data = _image_bytes(sample)
        if data is None:
            return Unreadable(name, "no image member (.jpg/.png/.webp)")
        try:
            image = decode_rgb(io.BytesIO(data))
            return self.transform(image) if self.transform else image
        except Exception as err:  # noqa: BLE001
            return Unreadable(name, describe_error(err))

    def __iter__(self) -> Iterator[Any]:
        for shard in self._my_shards():
            base = os.path.basename(shard)
            for sample in iter_shard_samples(shard):
                if isinstance(sample, Unreadable):
                    yield sample
                    continue
                yield self.convert(sample, f"{base}:{sample['__key__']}")

    def convert(self, sample: dict[str, Any], name: str) -> Any:
        raise NotImplementedError


class WdsClassification(ShardStream):
    """Image + ``.cls`` (a class index as text) samples."""

    def convert(self, sample: dict[str, Any], name: str) -> Any:
        if "cls" not in sample:
            return Unreadable(name, "no .cls label")
        try:
            label = int(sample["cls"].decode("utf-8").strip())
        except (UnicodeDecodeError, ValueError):
            return Unreadable(name, "the .cls label is not an integer")
        image = self._image(sample, name)
        return image if isinstance(image, Unreadable) else (image, label)


class WdsRetrieval(ShardStream):
    """Image + ``.txt`` samples; ``multi_caption`` reads one caption per line (CLIP_benchmark's retrieval sets)."""

    def __init__(self, shards: Sequence[str], transform: Transform | None, multi_caption: bool):
        super().__init__(shards, transform)
        self.multi_caption = multi_caption

    def convert(self, sample: dict[str, Any], name: str) -> Any:
        if "txt" not in sample:
            return Unreadable(name, "no .txt caption")
        try:
            text = sample["txt"].decode("utf-8")
        except UnicodeDecodeError:
            return Unreadable(name, "the .txt caption is not UTF-8")
        captions = [c.strip() for c in text.splitlines()] if self.multi_caption else [text.strip()]
        captions = [c for c in captions if c]
        if not captions:
            return Unreadable(name, "empty caption")
        image = self._image(sample, name)
        return image if isinstance(image, Unreadable) else (image, captions, name)


# ---- CLIP_benchmark's local wds layout -------------------------------------------------------------------------


@dataclass
class ClipBenchmarkWds:
    root: str  # the dataset folder (holds classnames.txt etc.)
    split: str
    shards: list[str]
    dataset_type: str  # "classification" | "retrieval" | ...
    classnames: list[str] | None
    templates: list[str] | None

    @property
    def name(self) -> str:
        """CLIP_benchmark's dataset name: ``wds_imagenet1k`` -> ``wds/imagenet1k``."""
        base = os.path.basename(os.path.normpath(self.root))
        return "wds/" + (base[len("wds_") :] if base.startswith("wds_") else base)


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ClipctlError(f"cannot read {path}: {err}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def find_clip_benchmark_wds(data: str | os.PathLike, split: str = "test") -> ClipBenchmarkWds | None:
    """The CLIP_benchmark dataset at ``data`` (the dataset folder, or its split folder), or None if it is not
    one. A folder that is one but is broken (bad ``nshards.txt``, missing shards) is an error."""
    path = Path(data).expanduser()
    if not path.is_dir():
        return None
    if (path / split / CB_NSHARDS).is_file():
        root, split_dir = path, path / split
    elif (path / CB_NSHARDS).is_file():
        root, split_dir = path.parent, path
        split = path.name
    else:
        return None
    lines = _read_lines(split_dir / CB_NSHARDS)
    try:
        nshards = int(lines[0]) if len(lines) == 1 else -1
    except ValueError:
        nshards = -1
    if nshards < 1:
        raise ClipctlError(f"{split_dir / CB_NSHARDS} must hold one positive number (the shard count)")
    shards = [str(split_dir / f"{i}.tar") for i in range(nshards)]
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ClipctlError(f"CLIP_benchmark dataset {root}: shard {missing[0]} is missing{more}")
    type_file = root / CB_TYPE
    dataset_type = _read_lines(type_file)[0].lower() if type_file.is_file() and _read_lines(type_file) else ""
    dataset_type = dataset_type or "classification"
    classnames = _read_lines(root / CB_CLASSNAMES) if (root / CB_CLASSNAMES).is_file() else None
    templates = _read_lines(root / CB_TEMPLATES) if (root / CB_TEMPLATES).is_file() else None
    return ClipBenchmarkWds(str(root), split, shards, dataset_type, classnames or None, templates or None)


# ---- retrieval sources -----------------------------------------------------------------------------------------


class CaptionedImages(Dataset):
    """Map-style: unique images, each with its captions (from a CSV)."""

    def __init__(
        self, paths: list[str], captions: list[list[str]], root: str, transform: Transform | None = None
    ):
        self.paths, self.captions, self.root, self.transform = paths, captions, root, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, list[str], str] | Unreadable:
        path = self.paths[index]
        name = os.path.relpath(path, self.root) if path.startswith(self.root) else path
        try:
            image = decode_rgb(path)
            return (self.transform(image) if self.transform else image), self.captions[index], name
        except Exception as err:  # noqa: BLE001
            return Unreadable(name, describe_error(err))


def collate_retrieval(batch: Sequence[Any]) -> dict[str, Any]:
    """``images`` (or None), ``captions`` (a list per image), ``names`` and ``failures``."""
    good = [item for item in batch if not isinstance(item, Unreadable)]
    failures = [(item.name, item.reason) for item in batch if isinstance(item, Unreadable)]
    return {
        "images": torch.stack([item[0] for item in good]) if good else None,
        "captions": [list(item[1]) for item in good],
        "names": [item[2] for item in good],
        "failures": failures,
    }


@dataclass
class RetrievalSource:
    kind: str  # "csv" | "shards" | "clip_benchmark"
    name: str  # dataset name for the results
    path: str
    num_images: int | None  # known up front for CSV
    num_captions: int | None
    make_dataset: Callable[[Transform], Dataset]


def _read_csv_source(
    path: str, img_key: str, caption_key: str, separator: str
) -> tuple[list[str], list[list[str]], int]:
    from clipctl.data.csv_table import read_csv_table

    table = read_csv_table(path, separator, img_key, caption_key)
    order: dict[str, int] = {}
    captions: list[list[str]] = []
    num_captions = 0
    for image_path, caption in zip(table.image_paths, table.captions, strict=True):
        caption = caption.strip()
        if not caption:
            continue
        index = order.setdefault(image_path, len(order))
        if index == len(captions):
            captions.append([])
        captions[index].append(caption)
        num_captions += 1
    if not order:
        raise ClipctlError(f"CSV {path} has no rows with a caption in column {caption_key!r}")
    return list(order), captions, num_captions


def default_csv_separator(path: str) -> str:
    """Comma for ``.csv``, otherwise a TAB (OpenCLIP's default for ``--csv-separator``)."""
    return "," if path.lower().endswith(".csv") else "\t"


def open_retrieval_source(
    data: str,
    *,
    csv_img_key: str = "filepath",
    csv_caption_key: str = "title",
    csv_separator: str | None = None,
    split: str = "test",
) -> RetrievalSource:
    """Work out what ``data`` is (CSV, shard spec, shard folder, CLIP_benchmark folder) and check it exists."""
    from clipctl.data.shardlist import check_shards_exist, expand_shard_spec

    text = str(data)
    path = Path(text).expanduser()
    is_spec = "{" in text or "::" in text or text.endswith(".tar")
    if not is_spec and path.is_dir():
        benchmark = find_clip_benchmark_wds(path, split)
        if benchmark is not None:
            if benchmark.dataset_type != "retrieval":
                raise ClipctlError(
                    f"{text} is a CLIP_benchmark {benchmark.dataset_type} dataset ({CB_TYPE}), not a retrieval one; "
                    "use `clipctl zeroshot --data` for classification sets"
                )
            shards = benchmark.shards
            return RetrievalSource(
                "clip_benchmark",
                benchmark.name,
                benchmark.root,
                None,
                None,
                lambda transform: WdsRetrieval(shards, transform, multi_caption=True),
            )
        tars = sorted(str(p) for p in path.glob("*.tar"))
        if not tars:
            raise ClipctlError(
                f"{text} holds no .tar shards and is not a CLIP_benchmark dataset folder "
                f"(DIR/{split}/{CB_NSHARDS} + DIR/{split}/0.tar ...); pass a CSV, shards or such a folder"
            )
        return RetrievalSource(
            "shards",
            path.resolve().name,
            str(path.resolve()),
            None,
            None,
            lambda transform: WdsRetrieval(tars, transform, False),
        )
    if is_spec:
        shards, _ = expand_shard_spec(text)
        check_shards_exist(shards)
        name = Path(shards[0]).parent.name or "shards"
        return RetrievalSource(
            "shards", name, text, None, None, lambda transform: WdsRetrieval(shards, transform, False)
        )
    if not path.exists():
        raise ClipctlError(f"--data {text}: no such file or folder")
    separator = csv_separator if csv_separator is not None else default_csv_separator(text)
    paths, captions, num_captions = _read_csv_source(str(path), csv_img_key, csv_caption_key, separator)
    root = str(path.resolve().parent)
    return RetrievalSource(
        "csv",
        path.stem,
        str(path),
        len(paths),
        num_captions,
        lambda transform: CaptionedImages(paths, captions, root, transform),
    )
