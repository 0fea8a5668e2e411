"""`clipctl eval retrieval`: image->text and text->image recall@1/5/10 (and mean/median rank) of a model on a
CSV of image paths and captions, webdataset shards, or a CLIP_benchmark retrieval dataset folder.

Images and captions are embedded batch by batch (features are kept, ``N x dim`` floats); the ranking is done in
chunks by ``clipctl.eval.retrieval``, so memory never holds an ``N x N`` matrix. An image with several captions
(CSV rows sharing a path, or CLIP_benchmark's one caption per line) counts as found when any of its captions is
within the first k, and each caption is found when its image is.
"""

from __future__ import annotations

import os
from typing import Any

from clipctl.config.resolver import pretrained_label
from clipctl.errors import ClipctlError

DEFAULT_BATCH_SIZE = 64


def run_retrieval(
    model: str,
    pretrained: str | None,
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    format: str = "clipctl",  # noqa: A002 - the CLI flag's name
    overwrite: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate retrieval and return the results document in ``format`` (also written to ``out`` when given).
    ``options`` are those of :func:`retrieval_document`."""
    from clipctl.eval.results import write_results

    doc = retrieval_document(model, pretrained, data, out, format=format, overwrite=overwrite, **options)
    return write_results(out, [doc], format, overwrite=overwrite)


def retrieval_document(
    model: str,
    pretrained: str | None,
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    csv_img_key: str = "filepath",
    csv_caption_key: str = "title",
    csv_separator: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    format: str = "clipctl",  # noqa: A002 - the CLI flag's name
    split: str = "test",
    chunk_size: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """The clipctl results document of one retrieval evaluation; nothing is written, but ``out`` and ``format``
    are checked before the model loads.

    ``csv_separator`` None means a comma for ``.csv`` files and a TAB otherwise (OpenCLIP's default).
    """
    import torch

    from clipctl.eval.classification import model_input_dtype
    from clipctl.eval.datasets import collate_retrieval, open_retrieval_source
    from clipctl.eval.results import check_outputs
    from clipctl.eval.retrieval import multi_caption_retrieval_metrics
    from clipctl.eval.runtime import (
        check_batch_size,
        load_model,
        make_loader,
        parse_device,
        plan_precision,
        progress_bar,
        resolve_workers,
    )

    check_batch_size(batch_size)
    torch_device = parse_device(device)
    plan = plan_precision(precision, torch_device)
    # the resolver reads "none" as random weights; the results record them as null
    weights, pretrained = pretrained, pretrained_label(pretrained)
    source = open_retrieval_source(
        str(data),
        csv_img_key=csv_img_key,
        csv_caption_key=csv_caption_key,
        csv_separator=csv_separator,
        split=split,
    )
    check_outputs(out, [source.name], format, model, pretrained, overwrite=overwrite)

    loaded = load_model(model, weights, torch_device, plan)
    dataset = source.make_dataset(loaded.preprocess)
    if source.num_images is not None:
        num_workers = resolve_workers(workers, source.num_images, batch_size)
    else:
        num_workers = min(
            resolve_workers(workers, None, batch_size), len(getattr(dataset, "shards", [])) or 0
        )
    loader = make_loader(
        dataset, batch_size=batch_size, workers=num_workers, collate=collate_retrieval, device=torch_device
    )
    input_dtype = model_input_dtype(loaded.model)
    autocast = (
        torch.autocast(torch_device.type, dtype=plan.autocast_dtype)
        if plan.autocast_dtype is not None
        else torch.autocast(torch_device.type, enabled=False)
    )
    image_features: list[torch.Tensor] = []
    text_features: list[torch.Tensor] = []
    text_image_index: list[int] = []
    failures: list[tuple[str, str]] = []
    num_failures = 0
    num_images = 0
    with progress_bar(progress, source.num_images, f"retrieval {source.name}") as advance:
        with torch.inference_mode():
            for batch in loader:
                num_failures += len(batch["failures"])
                failures.extend(batch["failures"][: max(0, 20 - len(failures))])
                images = batch["images"]
                if images is not None:
                    captions = batch["captions"]
                    flat = [c for group in captions for c in group]
                    with autocast:
                        img = loaded.model.encode_image(images.to(torch_device, input_dtype), normalize=True)
                        txt = loaded.model.encode_text(
                            loaded.tokenizer(flat).to(torch_device), normalize=True
                        )
                    image_features.append(img.float().cpu())
                    text_features.append(txt.float().cpu())
                    for offset, group in enumerate(captions):
                        text_image_index.extend([num_images + offset] * len(group))
                    num_images += len(images)
                advance(len(batch["captions"]) + len(batch["failures"]))
    if num_images == 0:
        raise ClipctlError(
            f"no image of {data} could be evaluated"
            + (
                f": all {num_failures} were unreadable (first: {failures[0][0]}: {failures[0][1]})"
                if failures
                else ""
            )
        )
    metrics = multi_caption_retrieval_metrics(
        torch.cat(image_features),
        torch.cat(text_features),
        torch.tensor(text_image_index, dtype=torch.long),
        chunk_size=chunk_size,
    )
    from clipctl import __version__

    doc = {
        "model": model,
        "pretrained": pretrained,
        "dataset": source.name,
        "task": "zeroshot_retrieval",
        "metrics": metrics,
        "data": source.path,
        "source": source.kind,
        "num_images": num_images,
        "num_texts": len(text_image_index),
        "num_unreadable": num_failures,
        "unreadable": [list(item) for item in failures],
        "precision": precision,
        "clipctl_version": __version__,
    }
    return doc
