"""CLIP (native text tower, text keys at the top level) and CustomTextCLIP (text tower under `text.`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from clipctl.models.text import lock_text_modules, pooled_token_index, project_text, text_global_pool

DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)


class _ContrastiveHead(nn.Module):
    """Shared parts of the two CLIP classes: construction, logit scale/bias, locking, forward outputs.

    Built in OpenCLIP's order (vision tower, text tower, logit scale), so state_dict keys and random
    initialisation match it; the subclasses differ in where the text tower's modules live (:meth:`_set_text`).
    """

    output_dict: bool
    visual: nn.Module
    logit_bias: nn.Parameter | None

    def __init__(
        self,
        embed_dim: int,
        vision_cfg: dict,
        text_cfg: dict,
        quick_gelu: bool = False,
        init_logit_scale: float = DEFAULT_LOGIT_SCALE,
        init_logit_bias: float | None = None,
        nonscalar_logit_scale: bool = False,
        cast_dtype: torch.dtype | None = None,
        output_dict: bool = False,
    ) -> None:
        from clipctl.models.build import build_text_tower, build_vision_tower

        super().__init__()
        self.output_dict = output_dict
        self.visual = build_vision_tower(embed_dim, vision_cfg, quick_gelu, cast_dtype)
        self._set_text(build_text_tower(embed_dim, text_cfg, quick_gelu, cast_dtype))
        self._init_logit_params(init_logit_scale, init_logit_bias, nonscalar_logit_scale)

    def _set_text(self, text: nn.Module) -> None:
        raise NotImplementedError

    def _init_logit_params(
        self, init_logit_scale: float, init_logit_bias: float | None, nonscalar_logit_scale: bool
    ) -> None:
        shape = [1] if nonscalar_logit_scale else []
        self.logit_scale = nn.Parameter(torch.ones(shape) * init_logit_scale)
        if init_logit_bias is not None:
            self.logit_bias = nn.Parameter(torch.ones(shape) * init_logit_bias)
        else:
            self.logit_bias = None

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        self.visual.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.visual(image)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def get_logits(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_features = self.encode_image(image, normalize=True)
        text_features = self.encode_text(text, normalize=True)
        image_logits = self.logit_scale.exp() * image_features @ text_features.T
        if self.logit_bias is not None:
            image_logits = image_logits + self.logit_bias
        return image_logits, image_logits.T

    def forward(
        self, image: torch.Tensor | None = None, text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None] | tuple[torch.Tensor | None, ...]:
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        if self.output_dict:
            out: dict[str, torch.Tensor | None] = {
                "image_features": image_features,
                "text_features": text_features,
                "logit_scale": self.logit_scale.exp(),
            }
            if self.logit_bias is not None:
                out["logit_bias"] = self.logit_bias
            return out
        if self.logit_bias is not None:
            return image_features, text_features, self.logit_scale.exp(), self.logit_bias
        return image_features, text_features, self.logit_scale.exp()


class CLIP(_ContrastiveHead):
    def _set_text(self, text: nn.Module) -> None:
        if not hasattr(text, "token_embedding"):
            raise ValueError("CLIP needs the native text tower; use CustomTextCLIP for HF text towers")
        # Registered in this order so state_dict keys come out in OpenCLIP's order.
        self.transformer = text.transformer
        self.context_length = text.context_length
        self.vocab_size = text.vocab_size
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.text_pool_type = text.pool_type
        self.text_eos_id = text.eos_id
        self.register_buffer("attn_mask", text.attn_mask, persistent=False)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        lock_text_modules(
            self.token_embedding,
            self.positional_embedding,
            self.transformer,
            self.ln_final,
            self.text_projection,
            None,
            unlocked_layers,
            freeze_layer_norm,
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.transformer.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        no_wd = {"positional_embedding"}
        if hasattr(self.visual, "no_weight_decay"):
            no_wd.update("visual." + n for n in self.visual.no_weight_decay())
        return no_wd

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        cast_dtype = self.transformer.get_cast_dtype()
        seq_len = text.shape[1]
        x = self.token_embedding(text).to(cast_dtype) + self.positional_embedding[:seq_len].to(cast_dtype)
        attn_mask = self.attn_mask
        if attn_mask is not None and attn_mask.shape[0] != seq_len:
            attn_mask = attn_mask[:seq_len, :seq_len]
        index = pooled_token_index(text, seq_len, self.text_pool_type, self.text_eos_id)
        if index is not None:
            # only the pooled token is used: the last block computes just its output
            x = self.ln_final(self.transformer(x, attn_mask=attn_mask, query_index=index)[:, 0])
        else:
            x = self.transformer(x, attn_mask=attn_mask)
            x = text_global_pool(self.ln_final(x), text, self.text_pool_type, self.text_eos_id)
        x = project_text(x, self.text_projection)
        return F.normalize(x, dim=-1) if normalize else x


class CustomTextCLIP(_ContrastiveHead):
    def _set_text(self, text: nn.Module) -> None:
        self.text = text
        self.context_length = text.context_length
        self.vocab_size = text.vocab_size

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        self.text.lock(unlocked_layers, freeze_layer_norm)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        no_wd: set[str] = set()
        if hasattr(self.visual, "no_weight_decay"):
            no_wd.update("visual." + n for n in self.visual.no_weight_decay())
        if hasattr(self.text, "no_weight_decay"):
            no_wd.update("text." + n for n in self.text.no_weight_decay())
        return no_wd

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.text(text)
        return F.normalize(features, dim=-1) if normalize else features
