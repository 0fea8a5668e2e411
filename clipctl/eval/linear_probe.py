"""`clipctl eval linear-probe`: a logistic regression on a model's frozen image features, trained on one
labelled dataset and scored on another -- CLIP_benchmark's ``linear_probe`` task, on a CPU or a GPU.

1. Inputs are checked (data found and labelled, classes of the test set known to the training set, output
   writable) before anything is loaded.
2. Features (L2-normalised image embeddings, as CLIP_benchmark's default) come from the feature cache; what it
   lacks is encoded and added (see ``feature_cache`` / ``probe_features``).
3. ``--few-shot K`` keeps K seeded images per class of the training features.
4. The weight decay is chosen on a held-out split of those training features (``--val-fraction``, stratified,
   seeded) by CLIP_benchmark's search, or given with ``--wd``; the probe is then refit on all of them
   (see ``logistic``).
5. Top-1, top-5 and mean per-class recall on the test features.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from clipctl.errors import ClipctlError

DEFAULT_VAL_FRACTION = 0.2


@dataclass
class LinearProbeOptions:
    model: str
    pretrained: str | None
    train: str | os.PathLike
    test: str | os.PathLike
    few_shot: int | None = None
    seed: int = 0
    val_fraction: float = DEFAULT_VAL_FRACTION
    weight_decay: float | None = None  # given: no search
    max_iter: int = 1000
    out: str | os.PathLike | None = None
    format: str = "clipctl"
    overwrite: bool = False
    cache_dir: str | os.PathLike | None = None  # None: feature_cache.default_cache_dir()
    use_cache: bool = True
    train_split: str = "train"  # CLIP_benchmark folders
    test_split: str = "test"
    csv_img_key: str = "filepath"
    csv_label_key: str = "label"
    csv_separator: str | None = None
    batch_size: int = 64
    workers: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = False


def _check_options(options: LinearProbeOptions) -> None:
    from clipctl.eval.loading import check_batch_size
    from clipctl.eval.results import check_format

    check_format(options.format)
    check_batch_size(options.batch_size)
    if options.few_shot is not None and options.few_shot < 1:
        raise ClipctlError(f"--few-shot must be at least 1, got {options.few_shot}")
    if not 0 < options.val_fraction < 1:
        raise ClipctlError(f"--val-fraction must be between 0 and 1 (exclusive), got {options.val_fraction}")
    if options.weight_decay is not None and not options.weight_decay >= 0:
        raise ClipctlError(f"--wd must be 0 or more, got {options.weight_decay}")
    if options.max_iter < 1:
        raise ClipctlError(f"--max-iter must be at least 1, got {options.max_iter}")


def _open_sources(options: LinearProbeOptions) -> tuple[Any, Any]:
    from clipctl.eval.labelled_data import align_test_labels, open_labelled_source

    csv = {
        "csv_img_key": options.csv_img_key,
        "csv_label_key": options.csv_label_key,
        "csv_separator": options.csv_separator,
    }
    train = open_labelled_source(options.train, what="--train", split=options.train_split, **csv)
    test = open_labelled_source(options.test, what="--test", split=options.test_split, **csv)
    return train, align_test_labels(train, test)


def _stores(options: LinearProbeOptions, pretrained: str | None, train: Any, test: Any) -> tuple[Any, Any]:
    from clipctl.eval.feature_cache import FeatureStore, cache_file, default_cache_dir, feature_space

    space = feature_space(options.model, pretrained, options.precision) if options.use_cache else None
    if space is None:
        return FeatureStore(None, {}), FeatureStore(None, {})
    folder = options.cache_dir if options.cache_dir is not None else default_cache_dir()
    settings = {
        "model": space["model"],
        "pretrained": space["weights"],
        "precision": options.precision,
        "normalize": "true",
        "modality": "image",
        "fast_decode": "false",
    }
    return tuple(FeatureStore(cache_file(folder, space, source), settings) for source in (train, test))


def _model_loader(options: LinearProbeOptions, pretrained: str | None) -> Any:
    from clipctl.eval.loading import load_model, plan_eval

    device, plan = plan_eval(options.device, options.precision)
    loaded: list[Any] = []

    def get_model() -> Any:
        if not loaded:
            loaded.append(load_model(options.model, pretrained, device, plan))
        return loaded[0]

    return get_model


def _num_classes(train: Any, train_labels: torch.Tensor, test_labels: torch.Tensor) -> int:
    if train.classes is not None:
        count = len(train.classes)
        if int(test_labels.max()) >= count or int(train_labels.max()) >= count:
            raise ClipctlError(f"a label is outside the {count} classes of {train.path}'s classnames.txt")
        return count
    return int(max(train_labels.max(), test_labels.max())) + 1


def fit_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, options: LinearProbeOptions
) -> tuple[Any, dict[str, Any] | None]:
    """The probe fitted on all of ``features`` with the given or the chosen weight decay, and the search."""
    from clipctl.eval.logistic import fit_logistic_regression, search_weight_decay, top1
    from clipctl.eval.probe_sampling import split_held_out

    device = torch.device(options.device)
    solved: dict[float, Any] = {}  # weight decay -> solution on the fit split, to start the next fit from

    def fit(x: torch.Tensor, y: torch.Tensor, wd: float, init: Any = None) -> Any:
        return fit_logistic_regression(
            x, y, num_classes, wd, device=device, max_iter=options.max_iter, init=init
        )

    def held_out_top1(wd: float) -> float:
        nearest = min(solved, key=lambda done: abs(math.log(done) - math.log(wd)), default=None)
        solved[wd] = fit(features[fit_at], labels[fit_at], wd, solved.get(nearest))
        return top1(solved[wd].logits(features[held]), labels[held])

    if options.weight_decay is not None:
        return fit(features, labels, options.weight_decay), None
    fit_at, held = split_held_out(labels, options.val_fraction, options.seed)
    if len(held) == 0:
        raise ClipctlError(
            "every class has a single training image, so none can be held out to choose the weight decay; "
            "pass --wd VALUE (e.g. --wd 1e-3) or use more images per class"
        )
    search = search_weight_decay(held_out_top1)
    tried = [[wd, score] for wd, score in search.tried.items()]
    details = {
        "val_fraction": options.val_fraction,
        "num_fit": len(fit_at),
        "num_val": len(held),
        "tried": tried,
    }
    return fit(features, labels, search.best, solved[search.best]), {"chosen": search.best, **details}


@dataclass
class ProbeData:
    """Both datasets and their features (cached or just encoded), checked and with aligned labels."""

    train: Any  # labelled_data.LabelledSource
    test: Any
    train_features: Any  # probe_features.Features
    test_features: Any
    num_classes: int
    cache_file: Any  # the training features' cache file (None: not cached)


def probe_data(options: LinearProbeOptions) -> ProbeData:
    """Check every input, then read or compute the features of both datasets (the model loads only if needed)."""
    from clipctl.eval.loading import plan_eval
    from clipctl.eval.probe_features import ExtractionSettings, source_features
    from clipctl.eval.results import check_outputs

    _check_options(options)
    plan_eval(options.device, options.precision)
    pretrained = _pretrained(options)
    train, test = _open_sources(options)
    check_outputs(
        options.out, [test.name], options.format, options.model, pretrained, overwrite=options.overwrite
    )
    train_store, test_store = _stores(options, pretrained, train, test)
    get_model = _model_loader(options, pretrained)
    settings = ExtractionSettings(options.batch_size, options.workers, options.progress)
    train_features = source_features(train, train_store, get_model, settings)
    test_features = source_features(test, test_store, get_model, settings)
    num_classes = _num_classes(train, train_features.labels, test_features.labels)
    return ProbeData(train, test, train_features, test_features, num_classes, train_store.path)


def _pretrained(options: LinearProbeOptions) -> str | None:
    return None if options.pretrained in (None, "", "none") else str(options.pretrained)


def _digest(keys: list[str]) -> str:
    """A short fingerprint of which images a few-shot run trained on (equal digests: the same images)."""
    import hashlib

    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:16]


def linear_probe_document(options: LinearProbeOptions) -> dict[str, Any]:
    """The clipctl results document of one linear probe; nothing is written (``out`` is only checked)."""
    from clipctl.eval.logistic import classification_scores
    from clipctl.eval.probe_sampling import sample_few_shot

    data = probe_data(options)
    x, y = data.train_features.features, data.train_features.labels
    sample = None
    if options.few_shot is not None:
        chosen = sample_few_shot(y, options.few_shot, options.seed, data.train.classes)
        x, y = x[chosen], y[chosen]
        sample = _digest([data.train_features.keys[i] for i in chosen.tolist()])
    probe, search = fit_probe(x, y, data.num_classes, options)
    test = data.test_features
    scores = classification_scores(probe.logits(test.features), test.labels, data.num_classes)
    fitted = {"scores": scores, "probe": probe, "search": search, "num_train": len(y), "sample": sample}
    return _document(options, data, fitted)


def _document(options: LinearProbeOptions, data: ProbeData, fitted: dict[str, Any]) -> dict[str, Any]:
    from clipctl import __version__

    train, test, train_features, test_features = (
        data.train,
        data.test,
        data.train_features,
        data.test_features,
    )
    unreadable = [list(item) for item in (*train_features.unreadable, *test_features.unreadable)]
    cache = data.cache_file
    return {
        "model": options.model,
        "pretrained": _pretrained(options),
        "dataset": test.name,
        "task": "linear_probe",
        "metrics": fitted["scores"],
        "train_data": train.path,
        "data": test.path,
        "num_train": fitted["num_train"],
        "num_samples": len(test_features.labels),
        "num_classes": data.num_classes,
        "few_shot": options.few_shot,
        "few_shot_sample": fitted["sample"],
        "seed": options.seed,
        "weight_decay": options.weight_decay if fitted["search"] is None else fitted["search"]["chosen"],
        "weight_decay_search": fitted["search"],
        "solver": {"name": "lbfgs", "max_iter": options.max_iter, "iterations": fitted["probe"].iterations},
        "features": {
            "normalized": True,
            "cache_dir": None if cache is None else str(cache.parent),
            "train": {"encoded": train_features.extracted, "cached": train_features.cached},
            "test": {"encoded": test_features.extracted, "cached": test_features.cached},
        },
        "num_unreadable": train_features.num_unreadable + test_features.num_unreadable,
        "unreadable": unreadable[:20],
        "notes": [*train.notes, *test.notes],
        "precision": options.precision,
        "clipctl_version": __version__,
    }


def run_linear_probe(options: LinearProbeOptions) -> dict[str, Any]:
    """Run the probe and return the results document in ``options.format`` (written to ``options.out`` if set)."""
    from clipctl.eval.results import write_results

    doc = linear_probe_document(options)
    return write_results(options.out, [doc], options.format, overwrite=options.overwrite)
