"""Zero-shot classification: images through the image tower, scored against a zero-shot classifier.

Scores are ``100 * image_features @ classifier`` as in OpenCLIP (a fixed 100, not the model's logit scale; it
does not change the ranking). Accuracies are fractions. ``mean_per_class_recall`` is the mean, over the
classes that have at least one image, of the fraction of that class's images predicted right (scikit-learn's
``balanced_accuracy_score``, which CLIP_benchmark reports).

A loader yields ``(images, targets)`` or ``(images, targets, failures)``; ``failures`` lists the ``(name,
reason)`` of images that could not be read (``images`` is None when none of a batch could).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from clipctl.errors import ClipctlError

ZERO_SHOT_SCALE = 100.0
MAX_LISTED_FAILURES = 20


def model_input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype images must have: that of the image tower's first convolution (float32 unless cast)."""
    for module in model.visual.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return module.weight.dtype
    return torch.float32


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _split_batch(batch: Any) -> tuple[torch.Tensor | None, torch.Tensor | None, list]:
    if isinstance(batch, dict):
        return batch["images"], batch["targets"], list(batch.get("failures", []))
    if len(batch) == 3:
        images, targets, failures = batch
        return images, targets, list(failures)
    images, targets = batch
    return images, targets, []


def evaluate_zero_shot(
    model: nn.Module,
    loader: Iterable[Any],
    classifier: torch.Tensor,
    *,
    device: str | torch.device,
    autocast_dtype: torch.dtype | None = None,
    input_dtype: torch.dtype | None = None,
    return_predictions: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """``top1``, ``top5`` and ``mean_per_class_recall`` (fractions) of ``classifier`` on ``loader``.

    ``top5`` is None with fewer than 5 classes (every image would be right). Also returned: ``num_samples``,
    ``num_unreadable`` and ``unreadable`` (the first few ``(name, reason)``); with ``return_predictions``,
    ``predictions``, ``targets`` and ``logits`` (CPU tensors, in loader order). ``on_batch(n)`` is called after
    each batch with its number of images, for progress bars.
    """
    device = torch.device(device)
    num_classes = classifier.shape[1]
    input_dtype = input_dtype or model_input_dtype(model)
    classifier = classifier.to(device)
    correct_per_class = torch.zeros(num_classes, dtype=torch.long)
    total_per_class = torch.zeros(num_classes, dtype=torch.long)
    top1 = top5 = 0
    num_unreadable = 0
    unreadable: list[tuple[str, str]] = []
    kept_logits, kept_targets = [], []
    k = min(5, num_classes)
    with torch.inference_mode():
        for batch in loader:
            images, targets, failures = _split_batch(batch)
            num_unreadable += len(failures)
            unreadable.extend(failures[: max(0, MAX_LISTED_FAILURES - len(unreadable))])
            if images is None or len(images) == 0:
                continue
            targets = torch.as_tensor(targets, dtype=torch.long)
            if int(targets.max()) >= num_classes or int(targets.min()) < 0:
                bad = int(targets.max()) if int(targets.max()) >= num_classes else int(targets.min())
                raise ClipctlError(
                    f"an image is labelled class {bad}, but there are only {num_classes} class names"
                )
            images = images.to(device=device, dtype=input_dtype)
            with _autocast(device, autocast_dtype):
                features = model.encode_image(images, normalize=True)
            # Scores in float32 whatever the tower's precision (bf16 weights give bf16 features).
            logits = (ZERO_SHOT_SCALE * features.float() @ classifier.float()).cpu()
            ranked = logits.topk(k, dim=1).indices
            hits = ranked == targets[:, None]
            top1 += int(hits[:, 0].sum())
            top5 += int(hits.any(dim=1).sum())
            total_per_class += torch.bincount(targets, minlength=num_classes)
            correct_per_class += torch.bincount(targets[hits[:, 0]], minlength=num_classes)
            if return_predictions:
                kept_logits.append(logits)
                kept_targets.append(targets)
            if on_batch is not None:
                on_batch(len(images) + len(failures))
    count = int(total_per_class.sum())
    if count == 0:
        raise ClipctlError(
            "no image could be evaluated"
            + (f": all {num_unreadable} were unreadable" if num_unreadable else " (the data is empty)")
        )
    present = total_per_class > 0
    recall = (correct_per_class[present].double() / total_per_class[present].double()).mean()
    results: dict[str, Any] = {
        "top1": top1 / count,
        "top5": top5 / count if num_classes >= 5 else None,
        "mean_per_class_recall": float(recall),
        "num_samples": count,
        "num_unreadable": num_unreadable,
        "unreadable": unreadable,
    }
    if return_predictions:
        logits_all = torch.cat(kept_logits)
        results["logits"] = logits_all
        results["predictions"] = logits_all.argmax(dim=1)
        results["targets"] = torch.cat(kept_targets)
    return results
