"""Text tower around a Hugging Face `transformers` encoder (RoBERTa, XLM-R, ...), built from a cached config.

Nothing is downloaded here: the config comes from the local HF cache (or is passed in) and the weights from
the CLIP checkpoint loaded afterwards.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from clipctl.errors import ClipctlError

POOLER_TYPES = ("mean_pooler", "max_pooler", "cls_pooler", "cls_last_hidden_state_pooler")


def _import_transformers() -> Any:
    try:
        import transformers
    except ModuleNotFoundError as exc:
        raise ClipctlError(
            "this model's text tower needs the 'transformers' package: pip install transformers"
        ) from exc
    return transformers


def load_cached_hf_config(name: str) -> Any:
    """The model's HF config from the local cache only; a clear error if it is not there."""
    transformers = _import_transformers()
    try:
        return transformers.AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ClipctlError(
            f"HF text model config {name!r} is not in the local Hugging Face cache (nothing is downloaded); "
            f"fetch it once with `huggingface-cli download {name} config.json`"
        ) from exc


class HFTextEncoder(nn.Module):
    """`text.transformer` is the HF encoder (its own key names), `text.proj` the projection to `output_dim`."""

    def __init__(
        self,
        model_name_or_path: str,
        output_dim: int,
        config: Any = None,
        pooler_type: str | None = "mean_pooler",
        proj_type: str | None = "mlp",
        pretrained: bool = True,
        output_tokens: bool = False,
    ) -> None:
        super().__init__()
        transformers = _import_transformers()
        self.output_tokens = output_tokens
        self.output_dim = output_dim
        self.config = config if config is not None else load_cached_hf_config(model_name_or_path)
        pooler_type = pooler_type or "mean_pooler"
        if pooler_type not in POOLER_TYPES:
            raise ClipctlError(f"unknown hf_pooler_type {pooler_type!r} (known: {', '.join(POOLER_TYPES)})")
        self.pooler_type = pooler_type
        self.transformer = self._create_encoder(
            transformers, model_name_or_path, pretrained and config is None
        )
        self.vocab_size = getattr(self.config, "vocab_size", 0)
        self.context_length = getattr(self.config, "max_position_embeddings", 0)
        width = getattr(self.config, "hidden_size", None) or self.config.d_model
        if width == output_dim and proj_type is None:
            self.proj: nn.Module = nn.Identity()
        elif proj_type == "linear":
            self.proj = nn.Linear(width, output_dim, bias=False)
        elif proj_type == "mlp":
            hidden = (width + output_dim) // 2
            self.proj = nn.Sequential(
                nn.Linear(width, hidden, bias=False), nn.GELU(), nn.Linear(hidden, output_dim, bias=False)
            )
        else:
            raise ClipctlError(f"unknown hf_proj_type {proj_type!r} (known: linear, mlp)")

    def _create_encoder(self, transformers: Any, name: str, pretrained: bool) -> nn.Module:
        """The HF encoder, with its base weights from the local cache when `pretrained` (never downloaded)."""
        kwargs: dict[str, Any] = {}
        if not getattr(self.config, "is_encoder_decoder", False):
            kwargs["add_pooling_layer"] = self.pooler_type == "cls_pooler"
        if pretrained:
            try:
                model = transformers.AutoModel.from_pretrained(name, local_files_only=True, **kwargs)
            except OSError as exc:
                raise ClipctlError(
                    f"HF text model weights for {name!r} are not in the local Hugging Face cache; load a full "
                    "CLIP checkpoint instead, or fetch them once with `huggingface-cli download`"
                ) from exc
        else:
            try:
                model = transformers.AutoModel.from_config(self.config, **kwargs)
            except TypeError:  # models without an add_pooling_layer option
                model = transformers.AutoModel.from_config(self.config)
        return model.encoder if getattr(self.config, "is_encoder_decoder", False) else model

    def _pool(self, out: Any, mask: torch.Tensor) -> torch.Tensor:
        hidden = out.last_hidden_state
        if self.pooler_type == "mean_pooler":
            return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(-1, keepdim=True)
        if self.pooler_type == "max_pooler":
            return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).max(dim=1).values
        pooler_output = getattr(out, "pooler_output", None)
        if self.pooler_type == "cls_pooler" and pooler_output is not None:
            return pooler_output
        return hidden[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        mask = (x != self.config.pad_token_id).long()
        out = self.transformer(input_ids=x, attention_mask=mask)
        projected = self.proj(self._pool(out, mask))
        if self.output_tokens:
            tokens = out.last_hidden_state
            if self.pooler_type == "cls_pooler":
                tokens = tokens[:, 1:]
            return projected, tokens
        return projected

    def _layers_and_embeddings(self) -> tuple[list[nn.Module], nn.Module]:
        encoder = getattr(self.transformer, "encoder", self.transformer)
        layers = getattr(encoder, "layer", None) or getattr(encoder, "block", None)
        embeddings = getattr(self.transformer, "embeddings", None) or self.transformer.embed_tokens
        if layers is None:
            raise ClipctlError("partial locking is not supported for this HF text model")
        return list(layers), embeddings

    def lock(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """Freeze the encoder except its last `unlocked_layers` layers (LayerNorms stay trainable if asked)."""

        def freeze(module: nn.Module) -> None:
            for name, param in module.named_parameters():
                is_norm = "LayerNorm" in name.split(".") or "layer_norm" in name.split(".")
                param.requires_grad = is_norm and not freeze_layer_norm

        if not unlocked_layers:
            freeze(self.transformer)
            return
        layers, embeddings = self._layers_and_embeddings()
        for module in [embeddings, *layers][:-unlocked_layers]:
            freeze(module)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        # transformers 5 renamed gradient_* to activation_checkpointing_* (the old names warn)
        prefix = "activation" if hasattr(self.transformer, "activation_checkpointing_enable") else "gradient"
        getattr(self.transformer, f"{prefix}_checkpointing_{'enable' if enable else 'disable'}")()
