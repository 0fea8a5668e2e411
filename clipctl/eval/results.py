"""Results documents of `clipctl zeroshot`, `clipctl eval retrieval` and `clipctl eval linear-probe`, and writing
them safely.

Two shapes:

- ``clipctl`` (default): ``{"model", "pretrained", "dataset", "task", "metrics": {...}, ...counts}``. Metric
  names are ``top1``/``top5``/``mean_per_class_recall`` (fractions) for classification and OpenCLIP's
  ``image_to_text_R@1`` ... for retrieval. A run over several datasets writes
  ``{"model", "pretrained", "results": [<one such document per dataset>]}``.
- ``clip_benchmark``: CLIP_benchmark's dump, ``{"dataset", "model", "pretrained", "task", "metrics",
  "language"}`` with its metric names (``acc1``, ``acc5``, ``mean_per_class_recall``;
  ``image_retrieval_recall@k``, ``text_retrieval_recall@k``; for ``linear_probe`` ``lp_acc1``, ``lp_acc5``,
  ``lp_mean_per_class_recall``, ``weight_decay``, ``seed``, ``fewshot_k`` (-1: all), ``normalized``). CLIP_benchmark writes one file per dataset, so
  several datasets need ``{dataset}`` in the output path.

An undefined number (``top5`` with fewer than five classes) is ``null``, never ``NaN``: the files are strict JSON.
Files are written to a temporary name and renamed, and an existing file holding results for another model
is not replaced unless asked.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from clipctl import fileio
from clipctl.errors import ClipctlError

FORMATS = ("clipctl", "clip_benchmark")
DATASET_PLACEHOLDER = "{dataset}"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ClipctlError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def strict_json_value(value: Any) -> Any:
    """``value`` with NaN/inf replaced by None and numpy/torch scalars made plain, recursively."""
    if isinstance(value, dict):
        return {str(k): strict_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clip_benchmark_document(doc: dict[str, Any]) -> dict[str, Any]:
    """CLIP_benchmark's dump for one dataset's clipctl document."""
    metrics = doc["metrics"]
    if doc["task"] == "zeroshot_classification":
        cb_metrics = {
            "acc1": metrics["top1"],
            "acc5": metrics["top5"],
            "mean_per_class_recall": metrics["mean_per_class_recall"],
        }
    elif doc["task"] == "linear_probe":
        cb_metrics = {
            "lp_acc1": metrics["top1"],
            "lp_acc5": metrics["top5"],
            "lp_mean_per_class_recall": metrics["mean_per_class_recall"],
            "weight_decay": doc["weight_decay"],
            "seed": doc["seed"],
            "fewshot_k": doc["few_shot"] if doc["few_shot"] is not None else -1,  # CLIP_benchmark's "all"
            "normalized": True,
        }
    else:
        from clipctl.eval.retrieval import clip_benchmark_retrieval_metrics

        cb_metrics = clip_benchmark_retrieval_metrics(metrics)
    return {
        "dataset": doc["dataset"],
        "model": doc["model"],
        "pretrained": doc["pretrained"],
        "task": doc["task"],
        "metrics": cb_metrics,
        "language": "en",
    }


def combine(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The clipctl document of a run: the dataset's own with one dataset, ``results: [...]`` with several."""
    if len(docs) == 1:
        return docs[0]
    return {"model": docs[0]["model"], "pretrained": docs[0]["pretrained"], "results": docs}


def _results_of(existing: Any) -> list[dict[str, Any]] | None:
    """The per-dataset documents in an existing results file, or None if it is not one."""
    if isinstance(existing, dict) and isinstance(existing.get("results"), list):
        existing = existing["results"]
    items = existing if isinstance(existing, list) else [existing]
    if items and all(isinstance(d, dict) and "model" in d and "metrics" in d for d in items):
        return items
    return None


def check_output(path: str | os.PathLike, model: str, pretrained: str | None, overwrite: bool) -> None:
    """Refuse to replace a file that is not a results file, or holds results of another model or weights."""
    path = Path(path)
    if path.is_dir():
        raise ClipctlError(f"--out {path} is a folder; give a .json file path")
    if not path.parent.exists():
        raise ClipctlError(f"--out {path}: folder {path.parent} does not exist")
    if overwrite or not path.exists():
        return
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        existing = None
    docs = _results_of(existing)
    if docs is None:
        raise ClipctlError(f"--out {path} exists and is not a results file; pass --overwrite to replace it")
    for doc in docs:
        if doc.get("model") != model or (doc.get("pretrained") or None) != (pretrained or None):
            raise ClipctlError(
                f"--out {path} holds results for model {doc.get('model')!r} with pretrained "
                f"{doc.get('pretrained')!r}, not {model!r} with {pretrained!r}; pass --overwrite or choose another path"
            )


def write_json_atomic(path: str | os.PathLike, document: Any) -> Path:
    """Write strict JSON (no NaN: undefined numbers become null) atomically."""
    return fileio.write_json_atomic(path, strict_json_value(document))


def _slug(dataset: str) -> str:
    return dataset.replace("/", "_")


def output_paths(out: str | os.PathLike, datasets: list[str], fmt: str) -> list[Path]:
    """Where each dataset's results go: one file (``{dataset}`` absent) or one per dataset (present)."""
    text = str(out)
    if DATASET_PLACEHOLDER in text:
        return [Path(text.replace(DATASET_PLACEHOLDER, _slug(d))) for d in datasets]
    if fmt == "clip_benchmark" and len(datasets) > 1:
        raise ClipctlError(
            "--format clip_benchmark writes one file per dataset: put {dataset} in --out, "
            "e.g. --out 'results_{dataset}.json'"
        )
    return [Path(text)]


def check_outputs(
    out: str | os.PathLike | None,
    datasets: list[str],
    fmt: str,
    model: str,
    pretrained: str | None,
    *,
    overwrite: bool = False,
) -> None:
    """Everything :func:`write_results` would refuse, checked before any work is done."""
    check_format(fmt)
    if out is None:
        return
    for path in output_paths(out, datasets, fmt):
        fileio.check_output_target(path, kind="file")
        check_output(path, model, pretrained, overwrite)


def write_results(
    out: str | os.PathLike | None, docs: list[dict[str, Any]], fmt: str, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write the documents of a run in ``fmt``; returns what was written (or would be, with ``out=None``)."""
    check_format(fmt)
    shaped = [clip_benchmark_document(d) for d in docs] if fmt == "clip_benchmark" else docs
    if fmt == "clip_benchmark":
        document: dict[str, Any] = shaped[0] if len(shaped) == 1 else {"results": shaped}
    else:
        document = combine(shaped)
    document = strict_json_value(document)
    if out is None:
        return document
    datasets = [d["dataset"] for d in docs]
    check_outputs(out, datasets, fmt, docs[0]["model"], docs[0]["pretrained"], overwrite=overwrite)
    paths = output_paths(out, datasets, fmt)
    if len(paths) == 1:
        write_json_atomic(paths[0], document)
    else:
        for path, doc in zip(paths, shaped, strict=True):
            write_json_atomic(path, doc)
    return document
