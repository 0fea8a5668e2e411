"""Native text transformer tower (CLIP BPE text encoder, SigLIP and CoCa variants)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from clipctl.models.layers import LayerNorm
from clipctl.models.transformer import Transformer

TEXT_POOL_TYPES = ("first", "last", "argmax", "eos", "none")


def build_causal_mask(size: int) -> torch.Tensor:
    """Additive mask: -inf above the diagonal."""
    return torch.full((size, size), float("-inf")).triu_(1)


def text_global_pool(
    x: torch.Tensor,
    text: torch.Tensor | None = None,
    pool_type: str = "argmax",
    eos_token_id: int | None = None,
) -> torch.Tensor:
    if pool_type == "first":
        return x[:, 0]
    if pool_type == "last":
        return x[:, -1]
    rows = torch.arange(x.shape[0], device=x.device)
    if pool_type == "argmax":
        # the BPE end-of-text id is the largest id, so argmax finds it
        return x[rows, text.argmax(dim=-1)]
    if pool_type == "eos":
        return x[rows, (text == eos_token_id).int().argmax(dim=-1)]
    return x


def pooled_token_index(
    text: torch.Tensor, seq_len: int, pool_type: str = "argmax", eos_token_id: int | None = None
) -> torch.Tensor | None:
    """Position of the token `text_global_pool` takes in each row, or None when it takes them all."""
    if pool_type == "first":
        return torch.zeros(text.shape[0], dtype=torch.long, device=text.device)
    if pool_type == "last":
        return torch.full((text.shape[0],), seq_len - 1, dtype=torch.long, device=text.device)
    if pool_type == "argmax":
        return text.argmax(dim=-1)
    if pool_type == "eos":
        return (text == eos_token_id).int().argmax(dim=-1)
    return None


def project_text(pooled: torch.Tensor, projection: nn.Module | nn.Parameter | None) -> torch.Tensor:
    if projection is None:
        return pooled
    if isinstance(projection, nn.Linear):
        return projection(pooled)
    return pooled @ projection


def lock_text_modules(
    token_embedding: nn.Module,
    positional_embedding: nn.Parameter,
    transformer: Transformer,
    ln_final: nn.Module,
    text_projection: nn.Module | nn.Parameter | None,
    cls_emb: nn.Parameter | None = None,
    unlocked_layers: int = 0,
    freeze_layer_norm: bool = True,
) -> None:
    """Freeze a native text tower, leaving the last `unlocked_layers` groups trainable.

    Groups, first to last: embeddings, each block but the last, last block + ln_final, projection.
    With `freeze_layer_norm=False` every LayerNorm stays trainable.
    """
    embeddings: list[nn.Module | nn.Parameter] = [token_embedding, positional_embedding]
    if cls_emb is not None:
        embeddings.append(cls_emb)
    blocks = list(transformer.resblocks)
    groups: list[list[nn.Module | nn.Parameter]] = [
        embeddings,
        *[[b] for b in blocks[:-1]],
        [blocks[-1], ln_final],
    ]
    if text_projection is not None:
        groups.append([text_projection])

    def params(item: nn.Module | nn.Parameter) -> list[nn.Parameter]:
        return [item] if isinstance(item, nn.Parameter) else list(item.parameters())

    for group in groups:
        for item in group:
            for p in params(item):
                p.requires_grad = False
    if unlocked_layers:
        for group in groups[-unlocked_layers:]:
            for item in group:
                for p in params(item):
                    p.requires_grad = True
    if not freeze_layer_norm:
        for module in [transformer, ln_final]:
            for sub in module.modules():
                if isinstance(sub, nn.LayerNorm):
                    for p in sub.parameters():
                        p.requires_grad = True


class TextTransformer(nn.Module):
    def __init__(
        self,
        context_length: int = 77,
        vocab_size: int = 49408,
        width: int = 512,
        heads: int = 8,
        layers: int = 12,
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = None,
        output_dim: int | None = 512,
        embed_cls: bool = False,
        no_causal_mask: bool = False,
        pad_id: int = 0,
        eos_id: int = 2,
        pool_type: str = "argmax",
        proj_type: str = "linear",
        proj_bias: bool = False,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        output_tokens: bool = False,
    ) -> None:
        super().__init__()
        if pool_type not in TEXT_POOL_TYPES:
            raise ValueError(f"unknown text pool_type {pool_type!r}")
        self.output_tokens = output_tokens
        self.num_pos = self.context_length = context_length
        self.vocab_size = vocab_size
        self.width = width
        self.output_dim = output_dim
        self.heads = heads
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.pool_type = pool_type

        self.token_embedding = nn.Embedding(vocab_size, width)
        if embed_cls:
            self.cls_emb: nn.Parameter | None = nn.Parameter(torch.empty(width))
            self.num_pos += 1
        else:
            self.cls_emb = None
        self.positional_embedding = nn.Parameter(torch.empty(self.num_pos, width))
        self.transformer = Transformer(
            width,
            layers,
            heads,
            mlp_ratio,
            ls_init_value=ls_init_value,
            act_layer=act_layer,
            norm_layer=norm_layer,
        )
        self.ln_final = norm_layer(width)
        if no_causal_mask:
            self.attn_mask = None
        else:
            self.register_buffer("attn_mask", build_causal_mask(self.num_pos), persistent=False)

        self.text_projection: nn.Module | nn.Parameter | None
        if proj_type == "none" or not output_dim:
            self.text_projection = None
        elif proj_bias:
            self.text_projection = nn.Linear(width, output_dim)
        else:
            self.text_projection = nn.Parameter(torch.empty(width, output_dim))
        self.init_parameters()

    def init_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if self.cls_emb is not None:
            nn.init.normal_(self.cls_emb, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = (width**-0.5) * ((2 * layers) ** -0.5)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        if isinstance(self.text_projection, nn.Linear):
            nn.init.normal_(self.text_projection.weight, std=width**-0.5)
            if self.text_projection.bias is not None:
                nn.init.zeros_(self.text_projection.bias)
        elif self.text_projection is not None:
            nn.init.normal_(self.text_projection, std=width**-0.5)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def lock(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        lock_text_modules(
            self.token_embedding,
            self.positional_embedding,
            self.transformer,
            self.ln_final,
            self.text_projection,
            self.cls_emb,
            unlocked_layers,
            freeze_layer_norm,
        )

    def no_weight_decay(self) -> set[str]:
        no_wd = {"positional_embedding"}
        if self.cls_emb is not None:
            no_wd.add("cls_emb")
        return no_wd

    def _cls_pad_mask(self, text: torch.Tensor, seq_len: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive key mask hiding pad tokens, [B*heads, seq, seq].

        The always-valid cls column goes FIRST although the cls token is appended last: the released CoCa
        weights were trained with this layout, so parity needs it.
        """
        valid = text != self.pad_id
        valid = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)
        additive = torch.zeros(valid.shape, dtype=dtype, device=text.device)
        additive.masked_fill_(~valid, float("-inf"))
        return additive.unsqueeze(1).expand(-1, seq_len, -1).repeat_interleave(self.heads, 0)

    def _embeds(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        cast_dtype = self.transformer.get_cast_dtype()
        seq_len = text.shape[1]
        x = self.token_embedding(text).to(cast_dtype)
        attn_mask = self.attn_mask
        if self.cls_emb is not None:
            x = torch.cat([x, self.cls_emb.to(cast_dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)], dim=1)
            seq_len += 1
            pad_mask = self._cls_pad_mask(text, seq_len, x.dtype)
            attn_mask = (
                pad_mask if attn_mask is None else attn_mask[:seq_len, :seq_len].unsqueeze(0) + pad_mask
            )
        elif attn_mask is not None and seq_len != attn_mask.shape[0]:
            attn_mask = attn_mask[:seq_len, :seq_len]
        x = x + self.positional_embedding[:seq_len].to(cast_dtype)
        return x, attn_mask

    def forward(self, text: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x, attn_mask = self._embeds(text)
        if not self.output_tokens:
            # only the pooled token is used: the last block computes just its output
            pool_type = "last" if self.cls_emb is not None else self.pool_type
            index = pooled_token_index(text, x.shape[1], pool_type, self.eos_id)
            if index is not None:
                x = self.ln_final(self.transformer(x, attn_mask=attn_mask, query_index=index)[:, 0])
                return project_text(x, self.text_projection)
        x = self.transformer(x, attn_mask=attn_mask)
        if self.cls_emb is not None:
            # the appended cls token is the pooled output, normalised after pooling
            pooled = self.ln_final(x[:, -1])
            tokens = x[:, :-1]
        else:
            x = self.ln_final(x)
            pooled = text_global_pool(x, text, self.pool_type, self.eos_id)
            tokens = x
        pooled = project_text(pooled, self.text_projection)
        if self.output_tokens:
            return pooled, tokens
        return pooled
