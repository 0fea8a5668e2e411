"""Evaluation during training: zero-shot ImageNet(-V2) top-1/top-5 and val-data retrieval metrics + val loss.

This module decides what to run when, feeds it the training model, and names results as OpenCLIP's trainer did
(``imagenet-zeroshot-val-top1``, ``clip_val_loss``, ``image_to_text_R@1`` ...). The zero-shot classifier comes
from ``clipctl.eval.zeroshot`` (shared with ``clipctl zeroshot``); retrieval ranks are computed in chunks of rows
so that memory stays linear in the number of validation samples (OpenCLIP built the full N x N matrix).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clipctl.config.run import TrainConfig
from clipctl.errors import ClipctlError
from clipctl.runtime import PrecisionPlan, autocast
from clipctl.train.step import unwrap_model


def should_run(frequency: int, epoch: int, epochs: int) -> bool:
    """``epoch`` is the number of completed epochs; 0 (before training) never runs."""
    if frequency <= 0 or epoch <= 0:
        return False
    return epoch % frequency == 0 or epoch == epochs


def check_eval_paths(cfg: TrainConfig) -> None:
    for flag, path in (("--imagenet-val", cfg.imagenet_val), ("--imagenet-v2", cfg.imagenet_v2)):
        if path is not None and not os.path.isdir(path):
            raise ClipctlError(f"{flag} {path} is not a folder (expected one sub-folder of images per class)")


def zero_shot_metrics(
    model: nn.Module,
    cfg: TrainConfig,
    preprocess_val: Any,
    tokenizer: Any,
    *,
    device: torch.device,
    plan: PrecisionPlan,
) -> dict[str, float]:
    from clipctl.eval.classification import evaluate_zero_shot
    from clipctl.eval.datasets import collate_classification, scan_image_folder
    from clipctl.eval.zeroshot import build_zero_shot_classifier
    from clipctl.eval.zeroshot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    model = unwrap_model(model)
    targets = [
        (n, p)
        for n, p in (
            ("imagenet-zeroshot-val", cfg.imagenet_val),
            ("imagenetv2-zeroshot-val", cfg.imagenet_v2),
        )
        if p
    ]
    if not targets:
        return {}
    model.eval()
    with torch.no_grad(), autocast(plan, device):
        classifier = build_zero_shot_classifier(
            model,
            tokenizer,
            IMAGENET_CLASSNAMES,
            OPENAI_IMAGENET_TEMPLATES,
            num_classes_per_batch=10,
            device=device,
        )
    results: dict[str, float] = {}
    for prefix, path in targets:
        folder = scan_image_folder(
            path, "--imagenet-v2" if prefix.startswith("imagenetv2") else "--imagenet-val"
        )
        folder.transform = preprocess_val
        loader = torch.utils.data.DataLoader(
            folder, batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=collate_classification
        )
        scores = evaluate_zero_shot(
            model,
            loader,
            classifier,
            device=device,
            autocast_dtype=plan.autocast_dtype,
            input_dtype=plan.input_dtype,
        )
        results[f"{prefix}-top1"] = float(scores["top1"])
        results[f"{prefix}-top5"] = float(scores["top5"] if scores["top5"] is not None else 1.0)
    return results


def val_metrics(
    model: nn.Module,
    val_data: Any,
    *,
    device: torch.device,
    plan: PrecisionPlan,
) -> dict[str, float]:
    """Mean contrastive val loss (batch-size weighted) and retrieval ranks over the whole val set."""
    from clipctl.eval.retrieval import retrieval_metrics

    model = unwrap_model(model)
    model.eval()
    image_feats, text_feats = [], []
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for images, texts in val_data.dataloader:
            images = images.to(device=device, dtype=plan.input_dtype)
            texts = texts.to(device=device)
            with autocast(plan, device):
                out = model(images, texts)
            out = (
                out
                if isinstance(out, dict)
                else dict(zip(("image_features", "text_features", "logit_scale"), out, strict=False))
            )
            img, txt = out["image_features"].float(), out["text_features"].float()
            logit_scale = out["logit_scale"].float().mean()
            logits = logit_scale * img @ txt.T
            labels = torch.arange(len(img), device=device)
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            loss_sum += float(loss) * len(img)
            count += len(img)
            image_feats.append(img.cpu())
            text_feats.append(txt.cpu())
    if count == 0:
        return {}
    results = retrieval_metrics(torch.cat(image_feats), torch.cat(text_feats))
    results["clip_val_loss"] = loss_sum / count
    results["num_samples"] = count
    return results


def write_results_jsonl(run_dir: Path | None, record: dict[str, Any]) -> None:
    """OpenCLIP appended eval results to checkpoints/results.jsonl; keep that file for its users' scripts."""
    if run_dir is None:
        return
    import json

    path = run_dir / "checkpoints" / "results.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
