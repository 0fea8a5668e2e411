"""`clipctl zeroshot`: zero-shot classification accuracy of a model on ImageNet, ImageNet-V2, any ImageFolder
or a CLIP_benchmark webdataset folder.

Everything that can be checked without the model (folders, class names against class folders, templates, the
output path) is checked first, so bad input fails in a second, not after loading a large model.

Results (see ``clipctl.eval.results``): one document per dataset with ``model``, ``pretrained``, ``dataset``,
``task`` and ``metrics`` (``top1``, ``top5``, ``mean_per_class_recall`` as fractions) plus counts; a run over
several datasets returns and writes ``{"model", "pretrained", "results": [...]}``.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipctl.config.resolver import pretrained_label
from clipctl.errors import ClipctlError

DEFAULT_BATCH_SIZE = 64
TEMPLATE_SETS = ("openai", "simple")
IMAGENET_NUM_CLASSES = 1000
PROMPTS_PER_BATCH = 800


@dataclass
class ZeroShotDataset:
    """One dataset to evaluate: where it is, its class names and templates, and how to read it."""

    name: str
    kind: str  # "imagenet-val" | "imagenet-v2" | "folder" | "clip_benchmark"
    path: str
    classnames: list[str]
    templates: list[str]
    templates_source: str  # "openai", "simple", a file path, or "dataset" (CLIP_benchmark's file)
    folder: Any = None  # ImageFolderData for folder kinds
    shards: list[str] | None = None


# ---- templates and class names ---------------------------------------------------------------------------------


def _check_template(template: str, where: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError:
        fields = ["?"]
    if not fields or any(f not in ("", "c") for f in fields):
        raise ClipctlError(
            f"{where}: template {template!r} needs one placeholder for the class name, {{c}} or {{}}, "
            "and no other {...} fields"
        )


def read_templates(spec: str | os.PathLike) -> list[str]:
    """``'openai'`` (80 templates), ``'simple'`` (7), or a file of one template per line with ``{c}`` or ``{}``."""
    from clipctl.eval.zeroshot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    if spec == "openai":
        return list(OPENAI_IMAGENET_TEMPLATES)
    if spec == "simple":
        return list(SIMPLE_IMAGENET_TEMPLATES)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ClipctlError(f"--templates {str(spec)!r} is neither 'openai', 'simple' nor an existing file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ClipctlError(f"cannot read templates file {path}: {err}") from None
    templates = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if line:
            _check_template(line, f"{path}:{number}")
            templates.append(line)
    if not templates:
        raise ClipctlError(f"templates file {path} has no templates (one per line, with {{c}})")
    return templates


def read_classnames(path: str | os.PathLike) -> list[str]:
    from clipctl.eval.zeroshot_metadata import load_classnames

    return load_classnames(path)


# ---- datasets ------------------------------------------------------------------------------------------------


def _imagenet_val(path: str, templates: str | None) -> ZeroShotDataset:
    from clipctl.eval.datasets import scan_image_folder
    from clipctl.eval.zeroshot_metadata import IMAGENET_CLASSNAMES

    folder = scan_image_folder(path, "--imagenet-val")
    if len(folder.classes) != IMAGENET_NUM_CLASSES:
        raise ClipctlError(
            f"--imagenet-val {path} has {len(folder.classes)} class folders; ImageNet's validation set has "
            f"{IMAGENET_NUM_CLASSES} (one per class, e.g. n01440764/); for other data use --data with --classnames"
        )
    spec = templates or "openai"
    return ZeroShotDataset(
        "imagenet1k",
        "imagenet-val",
        folder.root,
        list(IMAGENET_CLASSNAMES),
        read_templates(spec),
        spec,
        folder,
    )


def _imagenet_v2(path: str, templates: str | None) -> ZeroShotDataset:
    from clipctl.eval.datasets import scan_image_folder
    from clipctl.eval.zeroshot_metadata import IMAGENET_CLASSNAMES

    folder = scan_image_folder(path, "--imagenet-v2")
    expected = [str(i) for i in range(IMAGENET_NUM_CLASSES)]
    if folder.classes != expected:
        subfolders = [p for p in Path(path).iterdir() if p.is_dir() and not p.name.startswith(".")]
        hint = f" (did you mean {subfolders[0]}?)" if len(subfolders) == 1 else ""
        raise ClipctlError(
            f"--imagenet-v2 {path} must hold class folders named 0 ... 999 as ImageNet-V2 ships them; "
            f"found {len(folder.classes)} folder(s) starting {folder.classes[:3]}{hint}"
        )
    spec = templates or "openai"
    return ZeroShotDataset(
        "imagenetv2",
        "imagenet-v2",
        folder.root,
        list(IMAGENET_CLASSNAMES),
        read_templates(spec),
        spec,
        folder,
    )


def _data_folder(path: str, classnames: str | None, templates: str | None, split: str) -> ZeroShotDataset:
    from clipctl.eval.datasets import CB_CLASSNAMES, CB_TEMPLATES, find_clip_benchmark_wds, scan_image_folder

    benchmark = find_clip_benchmark_wds(path, split)
    if benchmark is not None:
        if benchmark.dataset_type != "classification":
            raise ClipctlError(
                f"--data {path} is a CLIP_benchmark {benchmark.dataset_type} dataset, not a classification one"
                + ("; use `clipctl eval retrieval`" if benchmark.dataset_type == "retrieval" else "")
            )
        names = read_classnames(classnames) if classnames else benchmark.classnames
        if not names:
            raise ClipctlError(f"--data {path} has no {CB_CLASSNAMES}; pass --classnames FILE")
        if templates:
            template_list, source = read_templates(templates), templates
        elif benchmark.templates:
            for number, template in enumerate(benchmark.templates, start=1):
                _check_template(template, f"{Path(benchmark.root) / CB_TEMPLATES}:{number}")
            template_list, source = benchmark.templates, "dataset"
        else:
            template_list, source = read_templates("openai"), "openai"
        return ZeroShotDataset(
            benchmark.name,
            "clip_benchmark",
            benchmark.root,
            names,
            template_list,
            source,
            shards=benchmark.shards,
        )
    folder = scan_image_folder(path, "--data")
    if not classnames:
        raise ClipctlError(
            f"--data {path} needs --classnames FILE: one class name per line, in the order of its "
            f"{len(folder.classes)} class folders ({', '.join(folder.classes[:3])}{', ...' if len(folder.classes) > 3 else ''})"
        )
    names = read_classnames(classnames)
    if len(names) != len(folder.classes):
        raise ClipctlError(
            f"--classnames {classnames} has {len(names)} names but --data {path} has {len(folder.classes)} class "
            "folders; give one name per folder, in the folders' sorted order"
        )
    spec = templates or "openai"
    name = Path(folder.root).name or "data"
    return ZeroShotDataset(name, "folder", folder.root, names, read_templates(spec), spec, folder)


def collect_datasets(
    *,
    data: str | os.PathLike | None,
    classnames: str | os.PathLike | None,
    templates: str | os.PathLike | None,
    imagenet_val: str | os.PathLike | None,
    imagenet_v2: str | os.PathLike | None,
    split: str = "test",
) -> list[ZeroShotDataset]:
    """The datasets of one run, each checked (class folders, class names, templates) without the model."""
    if data is None and imagenet_val is None and imagenet_v2 is None:
        raise ClipctlError("nothing to evaluate: give --imagenet-val DIR, --imagenet-v2 DIR or --data DIR")
    if classnames is not None and data is None:
        raise ClipctlError("--classnames goes with --data; ImageNet uses its own 1000 class names")
    spec = None if templates is None else str(templates)
    datasets = []
    if imagenet_val is not None:
        datasets.append(_imagenet_val(str(imagenet_val), spec))
    if imagenet_v2 is not None:
        datasets.append(_imagenet_v2(str(imagenet_v2), spec))
    if data is not None:
        datasets.append(_data_folder(str(data), None if classnames is None else str(classnames), spec, split))
    names = [d.name for d in datasets]
    for d in datasets:
        if names.count(d.name) > 1:
            d.name = f"{d.name}:{d.kind}"
    return datasets


# ---- the job -------------------------------------------------------------------------------------------------


def _loader_for(dataset: ZeroShotDataset, preprocess: Any, options: ZeroShotOptions, device: Any):
    from clipctl.eval.datasets import WdsClassification, collate_classification
    from clipctl.eval.loading import make_loader
    from clipctl.runtime import resolve_workers

    if dataset.folder is not None:
        dataset.folder.transform = preprocess
        source: Any = dataset.folder
        count: int | None = len(dataset.folder)
        workers = resolve_workers(options.workers, count, options.batch_size)
    else:
        source = WdsClassification(dataset.shards or [], preprocess)
        count = None
        workers = min(resolve_workers(options.workers, None, options.batch_size), len(dataset.shards or []))
    loader = make_loader(
        source, batch_size=options.batch_size, workers=workers, collate=collate_classification, device=device
    )
    return loader, count


def _document(
    dataset: ZeroShotDataset, scores: dict[str, Any], model: str, pretrained: str | None, precision: str
) -> dict[str, Any]:
    from clipctl import __version__

    folder = dataset.folder
    return {
        "model": model,
        "pretrained": pretrained,
        "dataset": dataset.name,
        "task": "zeroshot_classification",
        "metrics": {
            "top1": scores["top1"],
            "top5": scores["top5"],
            "mean_per_class_recall": scores["mean_per_class_recall"],
        },
        "data": dataset.path,
        "num_samples": scores["num_samples"],
        "num_classes": len(dataset.classnames),
        "num_unreadable": scores["num_unreadable"],
        "unreadable": [list(item) for item in scores["unreadable"]],
        "num_skipped_files": len(folder.skipped_files) if folder is not None else 0,
        "empty_classes": list(folder.empty_classes) if folder is not None else [],
        "templates": dataset.templates_source,
        "num_templates": len(dataset.templates),
        "precision": precision,
        "clipctl_version": __version__,
    }


@dataclass
class ZeroShotOptions:
    """One zero-shot evaluation. ``pretrained``: a tag, a weights file, or None/'none' for random weights.

    ``templates``: ``'openai'``, ``'simple'``, a file (one template per line, ``{c}`` or ``{}`` for the class
    name), or None for a CLIP_benchmark dataset's own templates (``'openai'`` elsewhere). ImageNet always uses
    its 1000 class names; ``data`` (an ImageFolder) needs ``classnames`` in its sorted folder order.
    """

    model: str
    pretrained: str | None = None
    data: str | os.PathLike | None = None
    classnames: str | os.PathLike | None = None
    templates: str | os.PathLike | None = "openai"
    imagenet_val: str | os.PathLike | None = None
    imagenet_v2: str | os.PathLike | None = None
    split: str = "test"  # of a CLIP_benchmark wds dataset
    out: str | os.PathLike | None = None
    format: str = "clipctl"
    overwrite: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = False


def run_zeroshot(options: ZeroShotOptions) -> dict[str, Any]:
    """Evaluate zero-shot on each dataset given and return the results document in ``options.format`` (also
    written to ``options.out`` when given)."""
    from clipctl.eval.results import write_results

    docs = zeroshot_documents(options)
    return write_results(options.out, docs, options.format, overwrite=options.overwrite)


def zeroshot_documents(options: ZeroShotOptions) -> list[dict[str, Any]]:
    """The clipctl results document of each dataset, without writing anything. ``out`` and ``format`` are only
    checked (before the model loads), so that writing them afterwards cannot fail on bad input."""
    from clipctl.eval.loading import check_batch_size, load_model, plan_eval
    from clipctl.eval.results import check_outputs

    check_batch_size(options.batch_size)
    torch_device, plan = plan_eval(options.device, options.precision)
    pretrained = pretrained_label(options.pretrained)  # the results record random weights as null
    datasets = collect_datasets(
        data=options.data,
        classnames=options.classnames,
        templates=options.templates,
        imagenet_val=options.imagenet_val,
        imagenet_v2=options.imagenet_v2,
        split=options.split,
    )
    names = [d.name for d in datasets]
    check_outputs(options.out, names, options.format, options.model, pretrained, overwrite=options.overwrite)

    loaded = load_model(options.model, options.pretrained, torch_device, plan)  # "none": random weights
    return evaluate_datasets(loaded, datasets, options, pretrained)


def evaluate_datasets(
    loaded: Any, datasets: list[ZeroShotDataset], options: ZeroShotOptions, pretrained: str | None
) -> list[dict[str, Any]]:
    """The results document of each dataset for an already loaded model (``eval.loading.LoadedModel``): soups
    and WiSE-FT score many weights in one model this way, loading each state dict instead of a new model.
    ``options`` gives the model name, batch size, workers and progress; ``pretrained`` names the weights."""
    classifiers: dict[tuple, Any] = {}
    docs = []
    for dataset in datasets:
        key = (tuple(dataset.classnames), tuple(dataset.templates))
        if key not in classifiers:
            classifiers[key] = _classifier(loaded, dataset)
        scores = _evaluate(loaded, dataset, classifiers[key], options)
        docs.append(_document(dataset, scores, options.model, pretrained, loaded.precision.precision))
    return docs


def _classifier(loaded: Any, dataset: ZeroShotDataset) -> Any:
    import torch

    from clipctl.eval.zeroshot import build_zero_shot_classifier
    from clipctl.runtime import autocast

    with torch.inference_mode(), autocast(loaded.precision, loaded.device):
        return build_zero_shot_classifier(
            loaded.model,
            loaded.tokenizer,
            dataset.classnames,
            dataset.templates,
            # as many prompts per forward pass as OpenCLIP's 10 classes x 80 templates
            num_classes_per_batch=max(10, PROMPTS_PER_BATCH // len(dataset.templates)),
            device=loaded.device,
        ).float()


def _evaluate(
    loaded: Any, dataset: ZeroShotDataset, classifier: Any, options: ZeroShotOptions
) -> dict[str, Any]:
    from clipctl.eval.classification import evaluate_zero_shot
    from clipctl.runtime import progress_bar

    loader, count = _loader_for(dataset, loaded.preprocess, options, loaded.device)
    with progress_bar(options.progress, count, f"zero-shot {dataset.name}") as advance:
        return evaluate_zero_shot(
            loaded.model,
            loader,
            classifier,
            device=loaded.device,
            autocast_dtype=loaded.precision.autocast_dtype,
            on_batch=advance,
        )
