"""Labelled images for `clipctl eval linear-probe`: an ImageFolder, a CSV/TSV of image paths and labels, or a
CLIP_benchmark ``wds/`` classification folder (``DIR/train/``, ``DIR/test/``).

Every image gets a key that says which file (and which version of it) it is: the path inside the folder or as
the CSV names it, plus its size and modification time, or ``shard/sample`` for webdataset samples. The
feature cache stores features under these keys, so a replaced image is encoded again and a renamed folder
is not mistaken for another.

Classes are named (folder names, CSV label values, ``classnames.txt``); the test set's labels are mapped onto
the training set's classes by name, so a test folder that lacks a class, or lists them in another order, still
scores correctly.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError


@dataclass(frozen=True)
class LabelledItem:
    key: str  # what the feature cache stores
    location: str  # the file to read
    label: int  # index into the source's classes


@dataclass
class LabelledSource:
    name: str  # the dataset's name in results
    kind: str  # "folder" | "csv" | "clip_benchmark"
    path: str
    classes: list[str] | None  # names in label order; None for a CLIP_benchmark folder without classnames.txt
    items: list[LabelledItem] = field(default_factory=list)  # folder and CSV
    shards: list[str] = field(default_factory=list)  # CLIP_benchmark
    notes: list[str] = field(default_factory=list)  # skipped files, empty classes
    identity: dict[str, Any] = field(default_factory=dict)  # what the feature cache keys the data by


def _file_key(name: str, location: str) -> str:
    try:
        stat = os.stat(location)
    except OSError:
        return name  # unreadable: it fails when read, and is counted then
    return f"{name}|{stat.st_size}|{stat.st_mtime_ns}"


def _from_folder(path: str, what: str) -> LabelledSource:
    from clipctl.eval.datasets import scan_image_folder

    folder = scan_image_folder(path, what)
    items = [
        LabelledItem(_file_key(Path(p).relative_to(folder.root).as_posix(), p), p, label)
        for p, label in folder.samples
    ]
    notes = []
    if folder.skipped_files:
        notes.append(f"ignored {len(folder.skipped_files)} file(s) that are not images")
    if folder.empty_classes:
        notes.append(f"{len(folder.empty_classes)} class folder(s) hold no images")
    name = Path(folder.root).name or "data"
    identity = {"kind": "folder", "root": folder.root}
    return LabelledSource(
        name, "folder", folder.root, list(folder.classes), items, notes=notes, identity=identity
    )


def _class_order(values: set[str]) -> list[str]:
    if values and all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _check_label_column(path: str, separator: str, label_key: str) -> None:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader([handle.readline().rstrip("\r\n")], delimiter=separator), [])
    except (OSError, UnicodeDecodeError) as err:
        raise ClipctlError(f"cannot read CSV {path}: {err}") from None
    columns = [c.strip() for c in header]
    if label_key not in columns:
        raise ClipctlError(
            f"CSV {path} has no label column {label_key!r} (columns: {columns}); pass --csv-label-key"
        )


def _from_csv(path: str, img_key: str, label_key: str, separator: str | None) -> LabelledSource:
    from clipctl.data.csv_table import parse_separator, read_csv_table
    from clipctl.eval.datasets import default_csv_separator

    if not Path(path).is_file():
        raise ClipctlError(f"{path}: no such file or folder")
    separator = parse_separator(separator) if separator is not None else default_csv_separator(path)
    _check_label_column(path, separator, label_key)
    table = read_csv_table(path, separator, img_key, label_key)  # image paths resolved from the CSV's folder
    labels: dict[str, str] = {}
    for image, label in zip(table.image_paths, table.captions, strict=True):
        label = label.strip()
        if not label:
            raise ClipctlError(f"CSV {path}: {image} has an empty {label_key!r}")
        if labels.setdefault(image, label) != label:
            raise ClipctlError(
                f"CSV {path}: {image} has two labels ({labels[image]!r}, {label!r}); one per image"
            )
    classes = _class_order(set(labels.values()))
    index = {name: i for i, name in enumerate(classes)}
    items = [LabelledItem(_file_key(image, image), image, index[label]) for image, label in labels.items()]
    identity = {"kind": "csv", "csv": str(Path(path).resolve())}
    return LabelledSource(Path(path).stem, "csv", path, classes, items, identity=identity)


def _from_clip_benchmark(benchmark: Any, path: str) -> LabelledSource:
    if benchmark.dataset_type != "classification":
        raise ClipctlError(
            f"{path} is a CLIP_benchmark {benchmark.dataset_type} dataset, not a classification one"
        )
    shards = [os.path.abspath(s) for s in benchmark.shards]
    stats = [(s, os.stat(s).st_size, os.stat(s).st_mtime_ns) for s in shards]
    identity = {"kind": "clip_benchmark", "split": benchmark.split, "shards": stats}
    return LabelledSource(
        benchmark.name,
        "clip_benchmark",
        benchmark.root,
        benchmark.classnames,
        shards=shards,
        identity=identity,
    )


def open_labelled_source(
    data: str | os.PathLike,
    *,
    what: str,
    split: str,
    csv_img_key: str = "filepath",
    csv_label_key: str = "label",
    csv_separator: str | None = None,
) -> LabelledSource:
    """Work out what ``data`` is and list its labelled images (checked: exists, not empty)."""
    from clipctl.eval.datasets import find_clip_benchmark_wds

    text = str(data)
    path = Path(text).expanduser()
    if path.is_dir():
        benchmark = find_clip_benchmark_wds(path, split)
        if benchmark is not None:
            return _from_clip_benchmark(benchmark, text)
        return _from_folder(str(path), what)
    if not path.exists():
        raise ClipctlError(f"{what} {text}: no such file or folder")
    return _from_csv(str(path), csv_img_key, csv_label_key, csv_separator)


def align_test_labels(train: LabelledSource, test: LabelledSource) -> LabelledSource:
    """``test`` with its labels as indices into ``train``'s classes (matched by name)."""
    if train.classes is None or test.classes is None or train.classes == test.classes:
        return test
    index = {name: i for i, name in enumerate(train.classes)}
    unknown = [name for name in test.classes if name not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        raise ClipctlError(
            f"the test data has {len(unknown)} class(es) the training data lacks ({shown}); "
            "a linear probe can only predict the classes it was trained on"
        )
    if test.kind == "clip_benchmark":
        raise ClipctlError(
            "a CLIP_benchmark test set must have the training set's classnames.txt, in its order"
        )
    remap = [index[name] for name in test.classes]
    test.items = [LabelledItem(item.key, item.location, remap[item.label]) for item in test.items]
    test.classes = list(train.classes)
    return test
