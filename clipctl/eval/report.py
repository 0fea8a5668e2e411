"""`clipctl eval report`: result files of any of our evaluations merged into one model x dataset table, the
shape of the model cards' results tables, with an average column.

Reads every results file clipctl writes -- `zeroshot`, `eval retrieval`, `eval linear-probe` (one document or
``{"results": [...]}``), greedy-soup and WiSE-FT results -- in clipctl's shape or CLIP_benchmark's (including
the files CLIP_benchmark itself writes, bare ``NaN`` and all). A cell is one number per (model, pretrained) and
(dataset, task):

- classification (zero-shot, linear probe): top-1 accuracy (or ``--metric top5`` / ``mean_per_class_recall``);
- retrieval: the mean of image->text and text->image recall@1 (or ``--metric recall@5`` / ``recall@10``), the
  "mean recall" of DataComp's benchmark tables.

The average is taken over a row's datasets only when it has all of them; an average over a different set of
datasets would not compare with the other rows' (its cell is left empty).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError

METRICS = ("auto", "top1", "top5", "mean_per_class_recall", "recall@1", "recall@5", "recall@10")
CLASSIFICATION_TASKS = {"zeroshot_classification": "zero-shot", "linear_probe": "linear probe"}
RETRIEVAL_TASK = "zeroshot_retrieval"
_CB_CLASSIFICATION = {"acc1": "top1", "acc5": "top5", "mean_per_class_recall": "mean_per_class_recall"}
_CB_PROBE = {"lp_acc1": "top1", "lp_acc5": "top5", "lp_mean_per_class_recall": "mean_per_class_recall"}


Column = tuple[str, str, str]  # (dataset name, task key, data path or "")


@dataclass
class ResultTable:
    """Rows are (model, pretrained); columns are (dataset, task, data path); values are fractions."""

    metric: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    values: dict[tuple[tuple[str, str], Column], float] = field(default_factory=dict)

    def column_label(self, column: Column) -> str:
        """The dataset's name; its folder path too when two datasets share the name (two ``heldout/``
        folders), and the task when one dataset has several (zero-shot and linear probe)."""
        dataset, task, data = column
        name = dataset
        if any(d == dataset and p != data for d, _, p in self.columns):
            name = "/".join(Path(data).parts[-2:]) if data else dataset
        base, _, shots = task.partition(":")
        kind = CLASSIFICATION_TASKS.get(base, "retrieval")
        if shots:
            return f"{name} ({shots} {kind})"
        if any(d == dataset and p == data and t != task for d, t, p in self.columns):
            return f"{name} ({kind})"
        return name

    def average(self, row: tuple[str, str]) -> float | None:
        cells = [self.values.get((row, column)) for column in self.columns]
        if not cells or any(c is None for c in cells):
            return None
        return sum(cells) / len(cells)  # type: ignore[arg-type]

    def metric_legend(self) -> str:
        tasks = {task.partition(":")[0] for _, task, _ in self.columns}
        parts = []
        if tasks & set(CLASSIFICATION_TASKS):
            name = "top-1" if self.metric in ("auto", "top1") else self.metric.replace("_", " ")
            parts.append(f"classification: {name} accuracy")
        if RETRIEVAL_TASK in tasks:
            k = self.metric.split("@")[1] if self.metric.startswith("recall@") else "1"
            parts.append(f"retrieval: mean of image->text and text->image recall@{k}")
        return "; ".join(parts) + " (%). The average needs every dataset of its row."


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ClipctlError(f"{path}: no such results file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # accepts CLIP_benchmark's bare NaN
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ClipctlError(f"{path} is not a JSON results file ({type(err).__name__})") from None


def result_documents(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-dataset documents of one results file, in either shape."""
    path = Path(path)
    data = _load(path)
    outer: dict[str, Any] = data if isinstance(data, dict) else {}
    items = data.get("results") if isinstance(data, dict) and isinstance(data.get("results"), list) else data
    items = items if isinstance(items, list) else [items]
    docs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("metrics"), dict):
            raise ClipctlError(f"{path} is not a results file (no 'metrics' in {type(item).__name__})")
        doc = {**{k: outer[k] for k in ("model", "pretrained") if k in outer}, **item}
        for key in ("model", "dataset", "task"):
            if not doc.get(key):
                raise ClipctlError(f"{path}: a result has no {key!r}")
        docs.append(doc)
    return docs


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _classification_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    names = {**_CB_CLASSIFICATION, **_CB_PROBE, **{k: k for k in ("top1", "top5", "mean_per_class_recall")}}
    return {ours: _number(metrics[theirs]) for theirs, ours in names.items() if theirs in metrics}


def _retrieval_metric(metrics: dict[str, Any], k: str) -> float | None:
    for a, b in (
        (f"image_to_text_R@{k}", f"text_to_image_R@{k}"),
        (f"text_retrieval_recall@{k}", f"image_retrieval_recall@{k}"),
    ):
        if a in metrics and b in metrics:
            x, y = _number(metrics[a]), _number(metrics[b])
            return None if x is None or y is None else (x + y) / 2
    return None


def task_key(doc: dict[str, Any]) -> str:
    """The task, with the shot count of a few-shot linear probe (``linear_probe:4-shot``): its own column."""
    shots = doc.get("few_shot") if "few_shot" in doc else doc["metrics"].get("fewshot_k")
    if doc["task"] == "linear_probe" and isinstance(shots, int) and shots > 0:
        return f"linear_probe:{shots}-shot"
    return str(doc["task"])


def cell_value(doc: dict[str, Any], metric: str, source: str) -> float | None:
    """The number a document contributes under ``metric``; None when it has none (e.g. top-5 of 3 classes)."""
    task, metrics = doc["task"], doc["metrics"]
    if task in CLASSIFICATION_TASKS:
        if metric.startswith("recall@"):
            return None
        return _classification_metrics(metrics).get("top1" if metric == "auto" else metric)
    if task == RETRIEVAL_TASK:
        if not (metric == "auto" or metric.startswith("recall@")):
            return None
        return _retrieval_metric(metrics, metric.split("@")[1] if "@" in metric else "1")
    raise ClipctlError(
        f"{source}: task {task!r} is not one this report knows (zero-shot, linear probe, retrieval)"
    )


def _data_paths(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, set[str]]:
    """The distinct data folders/files each dataset name was evaluated on (CLIP_benchmark files name none)."""
    paths: dict[str, set[str]] = {}
    for _, doc in docs:
        if doc.get("data"):
            paths.setdefault(str(doc["dataset"]), set()).add(str(doc["data"]))
    return paths


def build_table(paths: list[str | os.PathLike], metric: str = "auto") -> ResultTable:
    """Merge the files; the same (model, pretrained, dataset, task) in two places is an error. Two datasets
    are told apart by their data path only when results name different paths for one dataset name."""
    if metric not in METRICS:
        raise ClipctlError(f"unknown --metric {metric!r}; choose one of {', '.join(METRICS)}")
    if not paths:
        raise ClipctlError("no results files given")
    docs = [(str(path), doc) for path in paths for doc in result_documents(path)]
    ambiguous = {name for name, found in _data_paths(docs).items() if len(found) > 1}
    table = ResultTable(metric)
    origin: dict[tuple, str] = {}  # (row, column) -> the file it came from
    for path, doc in docs:
        row = (str(doc["model"]), str(doc.get("pretrained") or "none"))
        data = str(doc.get("data") or "") if doc["dataset"] in ambiguous else ""
        column = (str(doc["dataset"]), task_key(doc), data)
        value = cell_value(doc, metric, path)
        if (row, column) in origin:
            raise ClipctlError(
                f"{origin[(row, column)]} and {path} both hold {column[1]} results of {row[0]} ({row[1]}) on "
                f"{column[0]}; pass one of them"
            )
        origin[(row, column)] = path
        if row not in table.rows:
            table.rows.append(row)
        if column not in table.columns:
            table.columns.append(column)
        if value is not None:
            table.values[(row, column)] = value
    return table
