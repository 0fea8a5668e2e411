"""The training job picks the loss: distillation > CoCa > SigLIP > CLIP, with the run's settings."""

from __future__ import annotations

import torch

from clipctl.config.run import resolve_run_config
from clipctl.models.losses import ClipLoss, CoCaLoss, DistillClipLoss, SigLipLoss
from clipctl.train.losses import build_loss, loss_spec


def _cfg(**overrides):
    base = {"model": "ViT-B-32", "local_loss": True, "gather_with_grad": True}
    return resolve_run_config(None, {**base, **overrides}, [])


def test_distill_then_coca_then_siglip_then_clip():
    class CoCa(torch.nn.Module):
        pad_id = 7

    distill = _cfg(distill_model="ViT-L-14", distill_pretrained="openai")
    assert type(build_loss(distill, CoCa())) is DistillClipLoss
    coca = build_loss(
        _cfg(model="coca_ViT-B-32", coca_caption_loss_weight=3.0, coca_contrastive_loss_weight=0.5)
    )
    assert type(coca) is CoCaLoss and coca.caption_loss_weight == 3.0 and coca.clip_loss_weight == 0.5
    siglip = build_loss(_cfg(siglip=True, loss_dist_impl="shift"))
    assert type(siglip) is SigLipLoss and siglip.dist_impl == "shift"
    clip = build_loss(_cfg())
    assert type(clip) is ClipLoss and clip.local_loss and clip.gather_with_grad


def test_a_coca_model_under_any_name_gets_the_caption_loss_with_its_pad_id():
    class CoCa(torch.nn.Module):
        pad_id = 7

    spec = loss_spec(_cfg(model="custom.json"), CoCa())
    assert spec.kind == "coca" and spec.pad_id == 7
    assert loss_spec(_cfg(model="custom.json"), torch.nn.Linear(1, 1)).kind == "clip"
