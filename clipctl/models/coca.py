"""CoCa: contrastive towers plus a multimodal text decoder that cross-attends to image tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from clipctl.errors import ClipctlError
from clipctl.models.clip import DEFAULT_LOGIT_SCALE
from clipctl.models.generation import beam_search, sample_tokens
from clipctl.models.layers import LayerNorm, LayerNormFp32, QuickGELU
from clipctl.models.text import build_causal_mask
from clipctl.models.transformer import Transformer, residual_blocks

GENERATION_TYPES = ("beam_search", "top_k", "top_p")


class MultimodalTransformer(Transformer):
    """Causal self-attention blocks (`resblocks`) interleaved with cross-attention blocks (`cross_attn`)."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        context_length: int = 77,
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        output_dim: int = 512,
    ) -> None:
        super().__init__(width, layers, heads, mlp_ratio, ls_init_value, act_layer, norm_layer)
        self.context_length = context_length
        self.cross_attn = residual_blocks(
            layers, width, heads, mlp_ratio, ls_init_value, act_layer, norm_layer, is_cross_attention=True
        )
        self.register_buffer("attn_mask", build_causal_mask(context_length), persistent=False)
        self.ln_final = norm_layer(width)
        self.text_projection = nn.Parameter(torch.empty(width, output_dim))
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def forward(self, image_embs: torch.Tensor, text_embs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        seq_len = text_embs.shape[1]
        mask = self.attn_mask[:seq_len, :seq_len]
        x = text_embs
        use_ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        for self_block, cross_block in zip(self.resblocks, self.cross_attn, strict=True):
            if use_ckpt:
                x = checkpoint(self_block, x, None, mask, use_reentrant=False)
                x = checkpoint(cross_block, x, image_embs, None, use_reentrant=False)
            else:
                x = self_block(x, attn_mask=mask)
                x = cross_block(x, kv_x=image_embs)
        return self.ln_final(x) @ self.text_projection

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable


class CoCa(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        multimodal_cfg: dict,
        text_cfg: dict,
        vision_cfg: dict,
        quick_gelu: bool = False,
        init_logit_scale: float = DEFAULT_LOGIT_SCALE,
        init_logit_bias: float | None = None,
        nonscalar_logit_scale: bool = False,
        cast_dtype: torch.dtype | None = None,
        pad_id: int = 0,
        output_dict: bool | None = None,
    ) -> None:
        from clipctl.models.build import build_text_tower, build_vision_tower, multimodal_cfg_with_defaults

        super().__init__()
        mm = multimodal_cfg_with_defaults(multimodal_cfg)
        self.output_dict = True  # CoCa always returns a dict
        self.text = build_text_tower(embed_dim, text_cfg, quick_gelu, cast_dtype)
        # OpenCLIP sizes the decoder by text_cfg's vocab_size even for an HF text tower (49408 by default)
        vocab_size = int((text_cfg or {}).get("vocab_size", 49408))
        self.visual = build_vision_tower(embed_dim, vision_cfg, quick_gelu, cast_dtype)
        norm_layer = LayerNormFp32 if cast_dtype in (torch.float16, torch.bfloat16) else LayerNorm
        self.text_decoder = MultimodalTransformer(
            width=mm["width"],
            layers=mm["layers"],
            heads=mm["heads"],
            context_length=mm["context_length"],
            ls_init_value=mm["ls_init_value"],
            act_layer=QuickGELU if quick_gelu else nn.GELU,
            norm_layer=norm_layer,
            output_dim=vocab_size,
        )
        shape = [1] if nonscalar_logit_scale else []
        self.logit_scale = nn.Parameter(torch.ones(shape) * init_logit_scale)
        self.logit_bias = (
            nn.Parameter(torch.ones(shape) * init_logit_bias) if init_logit_bias is not None else None
        )
        self.pad_id = pad_id
        self.context_length = mm["context_length"]
        self.vocab_size = vocab_size

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)
        self.text_decoder.set_grad_checkpointing(enable)

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        self.visual.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        self.text.lock(unlocked_layers, freeze_layer_norm)

    def no_weight_decay(self) -> set[str]:
        no_wd: set[str] = set()
        for prefix, tower in (("visual.", self.visual), ("text.", self.text)):
            if hasattr(tower, "no_weight_decay"):
                no_wd.update(prefix + n for n in tower.no_weight_decay())
        return no_wd

    def _encode_image(
        self, images: torch.Tensor, normalize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        latent, tokens = self.visual(images)
        return (F.normalize(latent, dim=-1) if normalize else latent), tokens

    def _encode_text(self, text: torch.Tensor, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        latent, tokens = self.text(text)
        return (F.normalize(latent, dim=-1) if normalize else latent), tokens

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self._encode_image(images, normalize)[0]

    def encode_text(self, text: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self._encode_text(text, normalize)[0]

    def get_logits(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_logits = self.logit_scale.exp() * self.encode_image(image) @ self.encode_text(text).T
        if self.logit_bias is not None:
            image_logits = image_logits + self.logit_bias
        return image_logits, image_logits.T

    def forward(
        self,
        image: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        image_latent: torch.Tensor | None = None,
        image_embs: torch.Tensor | None = None,
        output_labels: bool = True,
    ) -> dict[str, torch.Tensor]:
        if image_latent is None or image_embs is None:
            image_latent, image_embs = self._encode_image(image)
        if text is None:
            return {"image_features": image_latent, "image_embs": image_embs}
        text_latent, token_embs = self._encode_text(text)
        out = {"image_features": image_latent, "text_features": text_latent}
        if output_labels:
            # teacher forcing: position i predicts token i+1
            out["labels"] = text[:, 1:]
            token_embs = token_embs[:, :-1]
        out["logits"] = self.text_decoder(image_embs, token_embs)
        out["logit_scale"] = self.logit_scale.exp()
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        return out

    def _next_token_logits(
        self, image_latent: torch.Tensor, image_embs: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        out = self(None, tokens, image_latent=image_latent, image_embs=image_embs, output_labels=False)
        return out["logits"][:, -1]

    @torch.no_grad()
    def generate(
        self,
        image: torch.Tensor,
        text: torch.Tensor | None = None,
        seq_len: int = 30,
        max_seq_len: int = 77,
        temperature: float = 1.0,
        generation_type: str = "beam_search",
        top_p: float = 0.1,
        top_k: int = 1,
        pad_token_id: int | None = None,
        eos_token_id: int | None = None,
        sot_token_id: int | None = None,
        num_beams: int = 6,
        num_beam_groups: int = 3,
        min_seq_len: int = 5,
        repetition_penalty: float = 1.0,
        fixed_output_length: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Caption images: [B, L] token ids starting with the start-of-text id.

        `beam_search` uses `num_beams` beams split into `num_beam_groups` groups; `top_k`/`top_p` sample.
        With `fixed_output_length` every row is padded to `seq_len`.
        """
        _check_generation(generation_type, seq_len, min_seq_len)
        sot = 49406 if sot_token_id is None else int(sot_token_id)
        eos = 49407 if eos_token_id is None else int(eos_token_id)
        pad = self.pad_id if pad_token_id is None else int(pad_token_id)
        common: dict[str, Any] = {  # what beam search and sampling both take
            "eos_token_id": eos,
            "pad_token_id": pad,
            "max_length": seq_len,
            "min_length": min_seq_len,
            "repetition_penalty": repetition_penalty,
        }
        was_training = self.training
        self.eval()
        try:
            if generation_type != "beam_search":
                return self._sample(
                    image,
                    text,
                    sot,
                    window=max_seq_len,
                    temperature=temperature,
                    top_k=top_k if generation_type == "top_k" else None,
                    top_p=top_p if generation_type == "top_p" else None,
                    fixed_output_length=fixed_output_length,
                    generator=generator,
                    **common,
                )
            out = self._beam_search(
                image, num_beams=num_beams, num_beam_groups=num_beam_groups, sot_token_id=sot, **common
            )
        finally:
            self.train(was_training)
        return _pad_columns(out, seq_len, pad) if fixed_output_length else out

    def _beam_search(
        self, image: torch.Tensor, *, num_beams: int, num_beam_groups: int, **search: Any
    ) -> torch.Tensor:
        if num_beams % num_beam_groups:
            raise ClipctlError("num_beams must be divisible by num_beam_groups")
        latent, embs = self._encode_image(image.repeat_interleave(num_beams, dim=0))
        return beam_search(
            lambda tokens: self._next_token_logits(latent, embs, tokens),
            batch_size=image.shape[0],
            num_beams=num_beams,
            num_beam_groups=num_beam_groups,
            device=image.device,
            **search,
        )

    def _sample(
        self, image: torch.Tensor, prompt: torch.Tensor | None, sot: int, **sampling: Any
    ) -> torch.Tensor:
        """Sample after `prompt` ([B, L] or one [L] row; the start token alone when None)."""
        latent, embs = self._encode_image(image)
        if prompt is None:
            prompt = torch.full((image.shape[0], 1), sot, dtype=torch.long, device=image.device)
        one_row = prompt.dim() == 1
        out = sample_tokens(
            lambda tokens, rows: self._next_token_logits(latent[rows], embs[rows], tokens),
            prompt[None, :] if one_row else prompt,
            **sampling,
        )
        return out.squeeze(0) if one_row else out


def _check_generation(generation_type: str, seq_len: int, min_seq_len: int) -> None:
    if generation_type not in GENERATION_TYPES:
        raise ClipctlError(
            f"unknown generation_type {generation_type!r} (known: {', '.join(GENERATION_TYPES)})"
        )
    if seq_len <= min_seq_len:
        raise ClipctlError(f"seq_len ({seq_len}) must be larger than min_seq_len ({min_seq_len})")


def _pad_columns(tokens: torch.Tensor, length: int, pad: int) -> torch.Tensor:
    """`tokens` with pad columns appended up to `length`."""
    if tokens.shape[1] >= length:
        return tokens
    filler = torch.full(
        (tokens.shape[0], length - tokens.shape[1]), pad, dtype=tokens.dtype, device=tokens.device
    )
    return torch.cat([tokens, filler], dim=1)
