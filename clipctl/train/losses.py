"""Which loss a run trains with: the run config and the model decide, the loss module only computes."""

from __future__ import annotations

from torch import nn

from clipctl.config.run import TrainConfig
from clipctl.models.losses import LossSpec, create_loss


def is_coca_model(model_name: str, model: nn.Module | None) -> bool:
    """OpenCLIP picks CoCa's loss by the model name; a config file of any name holding a CoCa model counts too."""
    if "coca" in str(model_name or "").lower():
        return True
    model = getattr(model, "module", model)
    return model is not None and "coca" in type(model).__name__.lower()


def loss_spec(cfg: TrainConfig, model: nn.Module | None = None) -> LossSpec:
    """Distillation > CoCa > SigLIP > CLIP: the order OpenCLIP resolves them in."""
    if cfg.distill_model:
        kind = "distill"
    elif is_coca_model(cfg.model, model):
        kind = "coca"
    else:
        kind = "siglip" if cfg.siglip else "clip"
    return LossSpec(
        kind=kind,
        local_loss=cfg.local_loss,
        gather_with_grad=cfg.gather_with_grad,
        siglip_dist_impl=cfg.loss_dist_impl,
        coca_caption_weight=cfg.coca_caption_loss_weight,
        coca_contrastive_weight=cfg.coca_contrastive_loss_weight,
        pad_id=int(getattr(getattr(model, "module", model), "pad_id", 0) or 0),
        multi_positive=cfg.multi_positive,
    )


def build_loss(cfg: TrainConfig, model: nn.Module | None = None) -> nn.Module:
    return create_loss(loss_spec(cfg, model))
