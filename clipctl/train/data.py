"""Training and evaluation data for ``clipctl train``: input checks, loaders and epoch bookkeeping.

Call :func:`validate_data_config` first, before any process group or model exists: it raises
:class:`~clipctl.errors.ClipctlError` with one line for every input problem it can see (missing shards, empty
specs, CSV separator or column mistakes, sizes it cannot know, too few shards for the workers). Then
:func:`build_train_data` / :func:`build_val_data` return a :class:`DataInfo`.

Sources: webdataset shards (``.tar``, brace and ``::`` specs, optional ``--dataset-resampled`` with
``--train-data-upsampling-factors``), CSV/TSV tables of image path + caption, class folders captioned by
templates (``imagefolder``, training only), and ``synthetic`` data.

Training batches are ``(images, tokens)``, or ``(images, tokens, labels)`` where the data has class labels
(a CSV with ``--csv-label-key``; shards under ``--multi-positive``, from ``.cls`` members; class folders).

Mid-epoch resume: ``build_train_data(..., epoch=e, skip_batches=k)`` yields, in epoch ``e``, exactly the batches
k, k+1, ... an uninterrupted run would have produced (same samples, same augmentation), for any worker count,
as long as the data and settings are unchanged. Later epochs are complete.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from clipctl.config.run import DATASET_TYPES
from clipctl.data.csv_table import CsvTable, parse_separator, read_csv_table
from clipctl.data.shardlist import (
    check_shards_exist,
    expand_shard_spec,
    is_glob,
    is_remote,
    read_sizes,
    split_sources,
)
from clipctl.errors import ClipctlError, UnknownNameError
from clipctl.train.data_common import LoaderView, SharedEpoch, SkipCounter
from clipctl.train.data_csv import (
    CsvItems,
    EpochBatchSampler,
    ImageFolderItems,
    ImageTextDataset,
    SyntheticItems,
    collate_skipping_none,
)
from clipctl.train.data_wds import WdsStream, no_usable_samples_message, probe_shards
from clipctl.train.pixels import InputNormalizer, split_uint8

log = logging.getLogger("clipctl.train.data")
DEFAULT_SYNTHETIC_IMAGE_SIZE = (224, 224)

__all__ = [
    "DATASET_TYPES",
    "DataInfo",
    "SyntheticDataset",
    "build_train_data",
    "build_val_data",
    "resolve_dataset_type",
    "validate_data_config",
]


@dataclass
class DataInfo:
    """A loader with its epoch size. ``dataloader`` is iterable, has ``len()`` (batches left this epoch) and
    ``num_batches`` / ``num_samples`` attributes as OpenCLIP's had. ``to_input(images, device)`` makes model
    input of a batch: a training transform ending in ToTensor + Normalize runs up to them in the workers, which
    send uint8 images, and ``to_input`` converts them where the model is, to the same floats."""

    dataloader: LoaderView
    num_samples: int
    num_batches: int
    shared_epoch: SharedEpoch | None = None
    sampler: EpochBatchSampler | None = None
    counter: SkipCounter = field(default_factory=lambda: SkipCounter(0))
    resume_epoch: int = -1
    skip_batches: int = 0
    to_input: InputNormalizer = field(default_factory=InputNormalizer)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration produces (drives shuffling and resampling in every worker)."""
        if self.shared_epoch is not None:
            self.shared_epoch.set(epoch)

    def start_batch(self, epoch: int) -> int:
        """Index of the first batch the loader yields in ``epoch`` (non-zero only in a resumed epoch)."""
        return min(self.skip_batches, self.num_batches) if epoch == self.resume_epoch else 0

    def skipped(self) -> int:
        """Corrupt samples skipped so far by this process and its workers (damaged tars count once each)."""
        return self.counter.total()


class SyntheticDataset(ImageTextDataset):
    """Deterministic random image-caption pairs for smoke runs: sample ``i`` is the same in every run with the
    same seed. Images are noisy solid colours named in the caption ("a photo of a red square")."""

    def __init__(
        self,
        num_samples: int,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        image_size: tuple[int, int] | int | None = None,
        seed: int = 0,
        counter: SkipCounter | None = None,
    ):
        size = image_size or transform_output_size(preprocess) or DEFAULT_SYNTHETIC_IMAGE_SIZE
        size = (size, size) if isinstance(size, int) else tuple(size)
        super().__init__(SyntheticItems(num_samples, size, seed), preprocess, tokenizer, counter)


def transform_output_size(preprocess: Any) -> tuple[int, int] | None:
    """The size the first resizing op of a torchvision pipeline produces, to synthesise images already that big."""
    for op in getattr(preprocess, "transforms", [preprocess]):
        size = getattr(op, "size", None)
        if isinstance(size, int):
            return size, size
        if isinstance(size, (tuple, list)) and len(size) in (1, 2) and all(isinstance(s, int) for s in size):
            return (size[0], size[-1])
    return None


# ---- config access (TrainConfig is owned by the engine; read it defensively) ----
def _get(cfg: Any, name: str, default: Any = None) -> Any:
    value = getattr(cfg, name, default)
    return default if value is None else value


def resolve_dataset_type(spec: Any, dataset_type: str | None) -> str:
    """``auto`` -> ``csv`` for .csv/.tsv, ``webdataset`` for .tar, brace patterns and shard folders."""
    dataset_type = (dataset_type or "auto").lower()
    if dataset_type not in DATASET_TYPES:
        raise UnknownNameError("dataset type", dataset_type, DATASET_TYPES)
    if dataset_type != "auto":
        return dataset_type
    if spec is None:
        raise ClipctlError("no training data: pass --train-data (or --dataset-type synthetic)")
    if spec == "synthetic":
        return "synthetic"
    first = split_sources(spec)[0]
    ext = first.rsplit(".", 1)[-1].lower() if "." in os.path.basename(first) else ""
    if ext in ("csv", "tsv"):
        return "csv"
    if os.path.isdir(first) and _looks_like_class_folders(first):
        raise ClipctlError(
            f"{first!r} holds sub-folders and no .tar shards: for class folders pass --dataset-type imagefolder"
        )
    if ext == "tar" or "{" in first or is_glob(first) or is_remote(first) or os.path.isdir(first):
        return "webdataset"
    raise ClipctlError(
        f"cannot tell the dataset type of {first!r} from its name: pass --dataset-type webdataset|csv"
    )


def _looks_like_class_folders(path: str) -> bool:
    entries = list(os.scandir(path))
    return any(e.is_dir() for e in entries) and not any(e.name.endswith(".tar") for e in entries)


@dataclass
class _Plan:
    kind: str
    num_samples: int = 0
    shards: list[str] = field(default_factory=list)
    weights: list[float] | None = None
    csv_path: str | None = None
    folder: ImageFolderItems | None = None


def _plan(cfg: Any, *, is_train: bool, world_size: int) -> _Plan | None:
    spec = _get(cfg, "train_data" if is_train else "val_data")
    batch_size = int(_get(cfg, "batch_size", 64))
    if batch_size < 1:
        raise ClipctlError(f"--batch-size must be at least 1 (got {batch_size})")
    if spec is None and not (is_train and _get(cfg, "dataset_type") == "synthetic"):
        return None
    dataset_type = _get(cfg, "dataset_type")
    if not is_train and dataset_type in ("synthetic", "imagefolder"):
        dataset_type = "auto"  # validation data is shards or a CSV whatever the training data is
    kind = resolve_dataset_type(spec, dataset_type)
    if is_train and _get(cfg, "csv_label_key") and kind != "csv":
        raise ClipctlError(f"--csv-label-key reads a CSV column, but --train-data is {kind} data")
    factors = _get(cfg, "train_data_upsampling_factors") if is_train else None
    resampled = bool(_get(cfg, "dataset_resampled", False)) and is_train
    if factors is not None and not (kind == "webdataset" and resampled):
        raise ClipctlError("--train-data-upsampling-factors needs webdataset shards and --dataset-resampled")
    if kind == "webdataset":
        return _plan_shards(cfg, spec, factors, is_train=is_train, resampled=resampled, world_size=world_size)
    return _plan_rows(cfg, kind, spec, is_train=is_train, world_size=world_size)


def _plan_rows(cfg: Any, kind: str, spec: Any, *, is_train: bool, world_size: int) -> _Plan | None:
    """Synthetic rows, class folders or a CSV: data of known size that the batch sampler splits."""
    batch_size = int(_get(cfg, "batch_size", 64))
    one_batch = f"one batch ({_batch_words(batch_size, world_size)})"
    if kind == "synthetic":
        num_samples_cfg = _get(cfg, "train_num_samples")
        if not is_train:
            return None
        if num_samples_cfg is None:
            raise ClipctlError("synthetic data needs a size: pass --train-num-samples N")
        if num_samples_cfg < batch_size * world_size:
            raise ClipctlError(f"--train-num-samples {num_samples_cfg} is smaller than {one_batch}")
        return _Plan(kind, num_samples=int(num_samples_cfg))
    if kind == "imagefolder":
        items = _image_folder_items(cfg, spec)
        if -(-len(items) // world_size) < batch_size:
            raise ClipctlError(
                f"--train-data {spec} has {len(items)} images, fewer than {one_batch}: lower --batch-size"
            )
        return _Plan(kind, num_samples=len(items), folder=items)
    sources = split_sources(spec)
    if len(sources) != 1:
        raise ClipctlError(f"CSV data takes one file, got {len(sources)} joined by '::'")
    table = _read_table(cfg, sources[0], labels=is_train)
    if is_train and -(-len(table) // world_size) < batch_size:
        raise ClipctlError(
            f"CSV {sources[0]} has {len(table)} rows, fewer than {one_batch}: lower --batch-size"
        )
    return _Plan(kind, num_samples=len(table), csv_path=sources[0])


def _plan_shards(
    cfg: Any, spec: Any, factors: Any, *, is_train: bool, resampled: bool, world_size: int
) -> _Plan:
    flag = "--train-num-samples" if is_train else "--val-num-samples"
    num_samples_cfg = _get(cfg, "train_num_samples" if is_train else "val_num_samples")
    batch_size = int(_get(cfg, "batch_size", 64))
    workers = int(_get(cfg, "workers", 0))
    global_batch = batch_size * (world_size if is_train else 1)
    shards, weights = expand_shard_spec(spec, factors)
    check_shards_exist(shards)
    known = read_sizes(shards)
    num_samples = num_samples_cfg if num_samples_cfg is not None else known
    if num_samples is None:
        raise ClipctlError(
            f"cannot tell how many samples {spec} holds (no sizes.json or __len__ next to the shards): "
            f"pass {flag} N"
        )
    if is_train and not resampled:
        if known is not None and known < global_batch:
            raise ClipctlError(
                f"the shards hold {known} samples, fewer than one batch ({_batch_words(batch_size, world_size)}): "
                "lower --batch-size or pass --dataset-resampled"
            )
        needed = max(1, workers) * world_size
        if len(shards) < needed:
            most = len(shards) // world_size
            advice = f"pass --workers {most}" if most >= 1 else f"use at most {len(shards)} processes"
            raise ClipctlError(
                f"{len(shards)} shard(s) cannot give each of {max(1, workers)} data worker(s) x {world_size} "
                f"process(es) its own shard: {advice}, or pass --dataset-resampled"
            )
    problem = probe_shards(shards)
    if problem is not None:
        raise ClipctlError(no_usable_samples_message(shards, problem))
    return _Plan("webdataset", num_samples=int(num_samples), shards=shards, weights=weights)


def csv_separator(cfg: Any) -> str:
    """The configured separator (``tab``, ``\\t``, ``,`` ...: see :func:`clipctl.data.csv_table.parse_separator`)."""
    return parse_separator(_get(cfg, "csv_separator", "\t"))


def _read_table(cfg: Any, path: str, *, labels: bool = False) -> CsvTable:
    """The CSV of ``path``; with ``labels``, also its ``--csv-label-key`` column (training only)."""
    return read_csv_table(
        path,
        csv_separator(cfg),
        _get(cfg, "csv_img_key", "filepath"),
        _get(cfg, "csv_caption_key", "title"),
        _get(cfg, "csv_label_key") if labels else None,
    )


def _image_folder_items(cfg: Any, root: str) -> ImageFolderItems:
    """Class folders with their class names (``--classnames`` or the folder names) and caption templates."""
    from clipctl.eval.datasets import scan_image_folder
    from clipctl.eval.zeroshot_job import read_classnames, read_templates

    folder = scan_image_folder(root, "--train-data")
    classnames = folder.classes
    names_file = _get(cfg, "classnames")
    if names_file:
        classnames = read_classnames(names_file)
        if len(classnames) != len(folder.classes):
            raise ClipctlError(
                f"--classnames {names_file} has {len(classnames)} names but --train-data {root} has "
                f"{len(folder.classes)} class folders; give one name per folder, in the folders' sorted order"
            )
    templates = read_templates(_get(cfg, "templates", "openai"))
    return ImageFolderItems(folder.samples, classnames, templates)


def _batch_words(batch_size: int, world_size: int) -> str:
    return f"batch size {batch_size}" + (f" x {world_size} processes" if world_size > 1 else "")


def validate_data_config(cfg: Any, world_size: int = 1) -> None:
    """Check the data settings of a run config; raise ClipctlError with one line on the first problem."""
    _plan(cfg, is_train=True, world_size=world_size)
    _plan(cfg, is_train=False, world_size=1)


def _loader(dataset: Any, workers: int, **kwargs: Any) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        **kwargs,
    )


def build_train_data(
    cfg: Any,
    preprocess: Callable[[Any], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    *,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    skip_batches: int = 0,
    uint8_batches: bool = True,
) -> DataInfo:
    """The training loader of ``cfg`` for this rank, positioned at ``epoch`` (and batch ``skip_batches`` of it);
    ``uint8_batches``: see :attr:`DataInfo.to_input`.

    Epoch size follows OpenCLIP: webdataset epochs have ``ceil(num_samples / global batch)`` batches rounded up
    to a multiple of the worker count; CSV and synthetic epochs are one pass over the rows with the last partial
    batch dropped.
    """
    plan = _plan(cfg, is_train=True, world_size=world_size)
    if plan is None:
        raise ClipctlError("no training data: pass --train-data (or --dataset-type synthetic)")
    if skip_batches < 0:
        raise ValueError("skip_batches must be >= 0")
    batch_size = int(_get(cfg, "batch_size", 64))
    workers = int(_get(cfg, "workers", 0))
    seed = int(_get(cfg, "seed", 0))
    shared_epoch = SharedEpoch(epoch)
    counter = SkipCounter(workers)
    preprocess, to_input = split_uint8(preprocess) if uint8_batches else (preprocess, InputNormalizer())

    if plan.kind == "webdataset":
        slots = max(1, workers)
        num_batches = math.ceil(plan.num_samples / (batch_size * world_size))
        per_worker = math.ceil(num_batches / slots)
        num_batches = per_worker * slots
        num_samples = num_batches * batch_size * world_size
        stream = WdsStream(
            plan.shards,
            preprocess=preprocess,
            tokenizer=tokenizer,
            batch_size=batch_size,
            counter=counter,
            is_train=True,
            weights=plan.weights,
            resampled=bool(_get(cfg, "dataset_resampled", False)),
            seed=seed,
            shared_epoch=shared_epoch,
            rank=rank,
            world_size=world_size,
            batches_per_worker=per_worker,
            resume_epoch=epoch,
            skip_batches=skip_batches,
            with_labels=bool(_get(cfg, "multi_positive", False)),
        )
        loader = _loader(stream, workers, batch_size=None)
        info = DataInfo(None, num_samples, num_batches, shared_epoch, None, counter, epoch, skip_batches)  # type: ignore[arg-type]
    else:
        dataset = _row_dataset(cfg, plan, preprocess, tokenizer, counter, rank)
        sampler = EpochBatchSampler(
            len(dataset),
            batch_size,
            seed=seed,
            shared_epoch=shared_epoch,
            rank=rank,
            world_size=world_size,
            resume_epoch=epoch,
            skip_batches=skip_batches,
        )
        loader = _loader(dataset, workers, batch_sampler=sampler)
        num_batches = sampler.num_batches
        num_samples = num_batches * batch_size * world_size
        info = DataInfo(None, num_samples, num_batches, shared_epoch, sampler, counter, epoch, skip_batches)  # type: ignore[arg-type]
    # no reference back to `info`: a cycle would leave the workers to the cyclic GC, which tears the loader
    # down in an order that makes torch wait 5 s per worker
    remaining = _remaining_batches(info.num_batches, epoch, skip_batches, shared_epoch)
    info.dataloader = LoaderView(loader, info.num_batches, info.num_samples, remaining)
    info.to_input = to_input
    return info


def _row_dataset(
    cfg: Any,
    plan: _Plan,
    preprocess: Callable[[Any], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    counter: SkipCounter,
    rank: int,
) -> ImageTextDataset:
    if plan.kind == "csv":
        return ImageTextDataset(
            CsvItems(_read_table(cfg, plan.csv_path, labels=True)), preprocess, tokenizer, counter
        )
    if plan.kind == "imagefolder":
        if rank == 0 and not _get(cfg, "multi_positive", False):
            log.warning(
                "class folders make the pairs of one class negatives of each other under the standard loss; "
                "--multi-positive counts them as positives"
            )
        return ImageTextDataset(plan.folder, preprocess, tokenizer, counter)
    seed = int(_get(cfg, "seed", 0))
    return SyntheticDataset(plan.num_samples, preprocess, tokenizer, seed=seed, counter=counter)


def _remaining_batches(
    num_batches: int, resume_epoch: int, skip: int, shared_epoch: SharedEpoch
) -> Callable[[], int]:
    return lambda: num_batches - (min(skip, num_batches) if shared_epoch.get() == resume_epoch else 0)


def build_val_data(
    cfg: Any, preprocess: Callable[[Any], torch.Tensor], tokenizer: Callable[[list[str]], torch.Tensor]
) -> DataInfo | None:
    """The evaluation loader for ``cfg.val_data`` (read once, in order, last batch partial), or None without it.

    Corrupt samples are dropped (the batch gets smaller) rather than replaced.
    """
    plan = _plan(cfg, is_train=False, world_size=1)
    if plan is None:
        return None
    batch_size = int(_get(cfg, "batch_size", 64))
    workers = int(_get(cfg, "workers", 0))
    counter = SkipCounter(workers)
    if plan.kind == "webdataset":
        stream = WdsStream(
            plan.shards,
            preprocess=preprocess,
            tokenizer=tokenizer,
            batch_size=batch_size,
            counter=counter,
            is_train=False,
        )
        loader = _loader(stream, workers, batch_size=None)
        num_batches = math.ceil(plan.num_samples / batch_size)
    else:
        table = _read_table(cfg, plan.csv_path)
        dataset = ImageTextDataset(CsvItems(table), preprocess, tokenizer, counter, replace_corrupt=False)
        loader = _loader(
            dataset, workers, batch_size=batch_size, shuffle=False, collate_fn=collate_skipping_none
        )
        num_batches = len(loader)
    view = LoaderView(loader, num_batches, plan.num_samples, lambda: num_batches)
    return DataInfo(view, plan.num_samples, num_batches, None, None, counter)
