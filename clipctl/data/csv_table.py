"""CSV/TSV tables of image paths and captions (and optionally class labels), as training
(`clipctl train --train-data x.csv`), evaluation (`clipctl eval retrieval --data x.csv`) and packing read them:
checked once, with a message that names the separator and columns the file seems to use when the ones asked
for are not there."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from clipctl.errors import ClipctlError

log = logging.getLogger("clipctl.data")

SEPARATOR_CANDIDATES = (",", "\t", ";", "|")
_SEPARATOR_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_CHECK_FIRST_ROWS = 5


@dataclass(frozen=True)
class CsvTable:
    path: str
    image_paths: list[str]  # absolute
    captions: list[str]
    labels: list[str] | None = None  # the label column as text, when one was asked for

    def __len__(self) -> int:
        return len(self.captions)


# What users type for a separator (the names and "\t" as a shell passes it, two characters) -> the character.
SEPARATOR_SPELLINGS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def parse_separator(value: str) -> str:
    """The one reading of ``--csv-separator`` / ``--separator`` everywhere: ``tab``, ``\t`` (typed), ``comma``,
    ``semicolon``, ``pipe``, ``space`` or one character (``,`` ``;`` ``|`` or a real TAB)."""
    spelled = SEPARATOR_SPELLINGS.get(value.strip().lower()) if value.strip() else None
    if spelled is not None:
        return spelled
    if len(value) == 1:
        return value
    raise ClipctlError(
        f"unknown CSV separator {value!r}: give one character (',', ';', '|'), tab or '\\t', or a name "
        "(comma, semicolon, pipe, space)"
    )


def _show_sep(sep: str) -> str:
    return "'" + sep.encode("unicode_escape").decode() + "'"


def _header_columns(first_line: str, sep: str) -> list[str]:
    return [c.strip() for c in next(csv.reader([first_line], delimiter=sep))] if first_line else []


def _guess_column(columns: Sequence[str], hints: Sequence[str]) -> str | None:
    for hint in hints:
        for col in columns:
            if hint in col.lower():
                return col
    return None


def check_csv_columns(
    path: str, sep: str, img_key: str, caption_key: str, label_key: str | None = None
) -> None:
    """Raise a message that names the separator and columns the file seems to use when the keys are absent."""
    sep = parse_separator(sep)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first_line = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClipctlError(f"cannot read CSV {path}: {exc}") from exc
    wanted = [img_key, caption_key] + ([label_key] if label_key else [])
    columns = _header_columns(first_line, sep)
    missing = [k for k in wanted if k not in columns]
    if not missing:
        return
    parsed = {s: _header_columns(first_line, s) for s in SEPARATOR_CANDIDATES}
    fitting = [s for s in SEPARATOR_CANDIDATES if all(k in parsed[s] for k in wanted)]
    widest = max(SEPARATOR_CANDIDATES, key=lambda s: len(parsed[s]))
    detected = fitting[0] if fitting else (widest if len(parsed[widest]) > 1 else sep)
    head = f"CSV {path} has no column {missing[0]!r} with separator {_show_sep(sep)}"
    if fitting:
        raise ClipctlError(
            f"{head}; it looks {_SEPARATOR_NAMES[detected]}-separated with columns {parsed[detected]}: "
            f"pass --csv-separator {_show_sep(detected)}"
        )
    advice = []
    if detected != sep:
        advice.append(f"--csv-separator {_show_sep(detected)}")
        head += f"; it looks {_SEPARATOR_NAMES[detected]}-separated with columns {parsed[detected]}"
    else:
        head += f"; its columns are {parsed[detected]}"
    cols = parsed[detected]
    if img_key not in cols:
        guess = _guess_column(cols, ("filepath", "path", "file", "image", "img", "url"))
        advice.append(f"--csv-img-key {guess or '<column>'}")
    if caption_key not in cols:
        guess = _guess_column(cols, ("caption", "title", "text", "txt", "desc"))
        advice.append(f"--csv-caption-key {guess or '<column>'}")
    if label_key and label_key not in cols:
        guess = _guess_column(cols, ("label", "class", "target", "category"))
        advice.append(f"--csv-label-key {guess or '<column>'}")
    raise ClipctlError(f"{head}: pass {' '.join(advice)}")


_TABLE_CACHE: dict[tuple, CsvTable] = {}


def read_csv_table(
    path: str, sep: str, img_key: str, caption_key: str, label_key: str | None = None
) -> CsvTable:
    """Read and check a CSV/TSV once per process (validation and loader building share the result)."""
    if not os.path.isfile(path):
        raise ClipctlError(f"CSV file not found: {path}")
    sep = parse_separator(sep)
    stat = os.stat(path)
    cache_key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, sep, img_key, caption_key, label_key)
    if cache_key in _TABLE_CACHE:
        return _TABLE_CACHE[cache_key]
    check_csv_columns(path, sep, img_key, caption_key, label_key)
    import pandas as pd

    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            usecols=list(dict.fromkeys([img_key, caption_key] + ([label_key] if label_key else []))),
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
        )
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ClipctlError(
            f"cannot parse CSV {path} with separator {_show_sep(sep)}: {str(exc).splitlines()[0]}"
        ) from exc
    if len(frame) == 0:
        raise ClipctlError(f"CSV {path} has a header but no rows")
    rel = frame[img_key].tolist()
    labels = frame[label_key].str.strip().tolist() if label_key else None
    table = CsvTable(path, _resolve_image_paths(path, rel), frame[caption_key].tolist(), labels)
    _TABLE_CACHE.clear()  # keep one table: they can be large
    _TABLE_CACHE[cache_key] = table
    return table


def _resolve_image_paths(csv_path: str, rel: list[str]) -> list[str]:
    """Relative paths are read from the CSV's folder; OpenCLIP read them from the working directory, so if only
    that works for the first rows, use it and say so."""
    folder = os.path.dirname(os.path.abspath(csv_path))
    head = [p for p in rel[:_CHECK_FIRST_ROWS]]
    in_folder = [os.path.isfile(p if os.path.isabs(p) else os.path.join(folder, p)) for p in head]
    base = folder
    if not any(in_folder):
        in_cwd = [os.path.isfile(os.path.abspath(p)) for p in head]
        if any(in_cwd):
            base = os.getcwd()
            log.warning(
                "image paths in %s are relative to the working directory, not the CSV's folder", csv_path
            )
        else:
            first = head[0] if os.path.isabs(head[0]) else os.path.join(folder, head[0])
            raise ClipctlError(
                f"CSV {csv_path}: none of the first {len(head)} image files exist (first: {first}); "
                f"relative paths are read from the CSV's folder {folder}"
            )
    return [p if os.path.isabs(p) else os.path.join(base, p) for p in rel]
