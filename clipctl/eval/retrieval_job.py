"""`clipctl eval retrieval`: image->text and text->image recall@1/5/10 (and mean/median rank) of a model on a
CSV of image paths and captions, webdataset shards, or a CLIP_benchmark retrieval dataset folder.

Images and captions are embedded batch by batch (features are kept, ``N x dim`` floats); the ranking is done in
chunks by ``clipctl.eval.retrieval``, so memory never holds an ``N x N`` matrix. An image with several captions
(CSV rows sharing a path, or CLIP_benchmark's one caption per line) counts as found when any of its captions is
within the first k, and each caption is found when its image is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from clipctl.config.resolver import pretrained_label
from clipctl.errors import ClipctlError

DEFAULT_BATCH_SIZE = 64


@dataclass
class RetrievalOptions:
    """One retrieval evaluation. ``csv_separator`` None means a comma for ``.csv`` files and a TAB otherwise
    (OpenCLIP's default); ``chunk_size`` bounds the rows of the similarity matrix held at once."""

    model: str
    pretrained: str | None
    data: str | os.PathLike
    out: str | os.PathLike | None = None
    format: str = "clipctl"
    overwrite: bool = False
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    csv_separator: str | None = None
    split: str = "test"  # of a CLIP_benchmark wds dataset
    chunk_size: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = False


@dataclass
class _Features:
    """What the encoding pass collects: features, which image each caption belongs to, unreadable samples."""

    image: list[torch.Tensor] = field(default_factory=list)
    text: list[torch.Tensor] = field(default_factory=list)
    text_image_index: list[int] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # the first MAX_REPORTED
    num_failures: int = 0
    num_images: int = 0


MAX_REPORTED = 20


def run_retrieval(options: RetrievalOptions) -> dict[str, Any]:
    """Evaluate retrieval and return the results document in ``options.format`` (also written to
    ``options.out`` when given)."""
    from clipctl.eval.results import write_results

    doc = retrieval_document(options)
    return write_results(options.out, [doc], options.format, overwrite=options.overwrite)


def retrieval_document(options: RetrievalOptions) -> dict[str, Any]:
    """The clipctl results document of one retrieval evaluation; nothing is written, but ``out`` and ``format``
    are checked before the model loads."""
    from clipctl.eval.datasets import open_retrieval_source
    from clipctl.eval.loading import check_batch_size, load_model, plan_eval
    from clipctl.eval.results import check_outputs
    from clipctl.eval.retrieval import multi_caption_retrieval_metrics

    check_batch_size(options.batch_size)
    torch_device, plan = plan_eval(options.device, options.precision)
    pretrained = pretrained_label(options.pretrained)  # the results record random weights as null
    source = open_retrieval_source(
        str(options.data),
        csv_img_key=options.csv_img_key,
        csv_caption_key=options.csv_caption_key,
        csv_separator=options.csv_separator,
        split=options.split,
    )
    check_outputs(
        options.out, [source.name], options.format, options.model, pretrained, overwrite=options.overwrite
    )
    loaded = load_model(options.model, options.pretrained, torch_device, plan)  # "none": random weights
    features = _encode(loaded, source, options)
    if features.num_images == 0:
        first = features.failures[0] if features.failures else None
        detail = (
            f": all {features.num_failures} were unreadable (first: {first[0]}: {first[1]})" if first else ""
        )
        raise ClipctlError(f"no image of {options.data} could be evaluated{detail}")
    metrics = multi_caption_retrieval_metrics(
        torch.cat(features.image),
        torch.cat(features.text),
        torch.tensor(features.text_image_index, dtype=torch.long),
        chunk_size=options.chunk_size,
    )
    return _document(source, metrics, features, options, pretrained)


def _loader(source: Any, dataset: Any, options: RetrievalOptions, device: torch.device) -> Any:
    from clipctl.eval.datasets import collate_retrieval
    from clipctl.eval.loading import make_loader
    from clipctl.runtime import resolve_workers

    if source.num_images is not None:
        workers = resolve_workers(options.workers, source.num_images, options.batch_size)
    else:  # shards: one worker per shard at most
        shards = len(getattr(dataset, "shards", []))
        workers = min(resolve_workers(options.workers, None, options.batch_size), shards)
    return make_loader(
        dataset, batch_size=options.batch_size, workers=workers, collate=collate_retrieval, device=device
    )


def _encode(loaded: Any, source: Any, options: RetrievalOptions) -> _Features:
    """Embed every readable image and all its captions, batch by batch."""
    from clipctl.eval.classification import model_input_dtype
    from clipctl.runtime import autocast, progress_bar

    dataset = source.make_dataset(loaded.preprocess)
    loader = _loader(source, dataset, options, loaded.device)
    input_dtype = model_input_dtype(loaded.model)
    found = _Features()
    with progress_bar(options.progress, source.num_images, f"retrieval {source.name}") as advance:
        with torch.inference_mode():
            for batch in loader:
                found.num_failures += len(batch["failures"])
                found.failures.extend(batch["failures"][: max(0, MAX_REPORTED - len(found.failures))])
                if batch["images"] is not None:
                    with autocast(loaded.precision, loaded.device):
                        _encode_batch(loaded, batch, input_dtype, found)
                advance(len(batch["captions"]) + len(batch["failures"]))
    return found


def _encode_batch(loaded: Any, batch: dict[str, Any], input_dtype: torch.dtype, found: _Features) -> None:
    images, captions = batch["images"], batch["captions"]
    flat = [c for group in captions for c in group]
    img = loaded.model.encode_image(images.to(loaded.device, input_dtype), normalize=True)
    txt = loaded.model.encode_text(loaded.tokenizer(flat).to(loaded.device), normalize=True)
    found.image.append(img.float().cpu())
    found.text.append(txt.float().cpu())
    for offset, group in enumerate(captions):
        found.text_image_index.extend([found.num_images + offset] * len(group))
    found.num_images += len(images)


def _document(
    source: Any, metrics: dict[str, Any], found: _Features, options: RetrievalOptions, pretrained: str | None
) -> dict[str, Any]:
    from clipctl import __version__

    return {
        "model": options.model,
        "pretrained": pretrained,
        "dataset": source.name,
        "task": "zeroshot_retrieval",
        "metrics": metrics,
        "data": source.path,
        "source": source.kind,
        "num_images": found.num_images,
        "num_texts": len(found.text_image_index),
        "num_unreadable": found.num_failures,
        "unreadable": [list(item) for item in found.failures],
        "precision": options.precision,
        "clipctl_version": __version__,
    }
