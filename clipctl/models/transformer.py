"""Pre-LN transformer blocks with OpenCLIP's parameter names (`attn.in_proj_weight`, `mlp.c_fc`, ...)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from clipctl.models.layers import MLP, LayerNorm, LayerScale

CUSTOM_BLOCK_FLAGS = (
    "qk_norm",
    "scaled_cosine_attn",
    "scale_heads",
    "scale_attn_inner",
    "scale_attn",
    "scale_fc",
)


def multihead_attention(
    attn: nn.MultiheadAttention,
    q_x: torch.Tensor,
    kv_x: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch-first attention using the weights of an `nn.MultiheadAttention`, computed with SDPA.

    Calling SDPA directly avoids the mask re-layout and weight re-checks that the module does on every call
    outside its inference fast path; the maths is the same.
    """
    batch, q_len, width = q_x.shape
    heads = attn.num_heads
    head_dim = width // heads
    if attn._qkv_same_embed_dim:
        if kv_x is None:
            qkv = F.linear(q_x, attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.view(batch, q_len, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            kv_len = q_len
        else:
            w_q, w_kv = attn.in_proj_weight.split([width, 2 * width])
            b_q, b_kv = (
                (None, None) if attn.in_proj_bias is None else attn.in_proj_bias.split([width, 2 * width])
            )
            kv_len = kv_x.shape[1]
            q = F.linear(q_x, w_q, b_q).view(batch, q_len, heads, head_dim).transpose(1, 2)
            kv = F.linear(kv_x, w_kv, b_kv).view(batch, kv_len, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
            k, v = kv.unbind(0)
    else:
        kv_x = q_x if kv_x is None else kv_x
        kv_len = kv_x.shape[1]
        b_q, b_k, b_v = (None,) * 3 if attn.in_proj_bias is None else attn.in_proj_bias.chunk(3)
        q = F.linear(q_x, attn.q_proj_weight, b_q).view(batch, q_len, heads, head_dim).transpose(1, 2)
        k = F.linear(kv_x, attn.k_proj_weight, b_k).view(batch, kv_len, heads, head_dim).transpose(1, 2)
        v = F.linear(kv_x, attn.v_proj_weight, b_v).view(batch, kv_len, heads, head_dim).transpose(1, 2)
    if attn_mask is not None:
        attn_mask = attn_mask.to(q.dtype)
        if attn_mask.dim() == 3:
            # [B*heads, L, S] (OpenCLIP's layout) -> [B, heads, L, S]
            attn_mask = attn_mask.view(batch, -1, q_len, kv_len)
    dropout = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
    out = out.transpose(1, 2).reshape(batch, q_len, width)
    return attn.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """x + ls_1(attn(ln_1(x))), then x + ls_2(mlp(ln_2(x))); optional cross-attention via `ln_1_kv`."""

    def __init__(
        self,
        d_model: int,
        n_head: int,
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        is_cross_attention: bool = False,
    ) -> None:
        super().__init__()
        self.ln_1 = norm_layer(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_head, batch_first=True)
        self.ls_1 = LayerScale(d_model, ls_init_value) if ls_init_value is not None else nn.Identity()
        if is_cross_attention:
            self.ln_1_kv = norm_layer(d_model)
        self.ln_2 = norm_layer(d_model)
        self.mlp = MLP(d_model, int(d_model * mlp_ratio), act_layer)
        self.ls_2 = LayerScale(d_model, ls_init_value) if ls_init_value is not None else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        kv_x: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        query_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, L, D] -> [B, L, D]; with `query_index` ([B] positions) only those tokens' outputs, [B, 1, D]."""
        if query_index is not None:
            return self._forward_one_token(x, attn_mask, query_index)
        if kv_x is not None and hasattr(self, "ln_1_kv"):
            kv_x = self.ln_1_kv(kv_x)
        x = x + self.ls_1(multihead_attention(self.attn, self.ln_1(x), kv_x, attn_mask))
        x = x + self.ls_2(self.mlp(self.ln_2(x)))
        return x

    def _forward_one_token(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, query_index: torch.Tensor
    ) -> torch.Tensor:
        """Self-attention output of one token per row: its query against all keys, then its MLP.

        A token's output depends on every token's input but on no other token's output, so when only the
        pooled token leaves the tower the other outputs of the last block need not be computed (about 1/12 of a
        12-block tower's work).
        """
        rows = torch.arange(x.shape[0], device=x.device)
        normed = self.ln_1(x)
        if attn_mask is not None:
            if attn_mask.dim() == 2:  # [L, S]
                attn_mask = attn_mask[query_index].unsqueeze(1)
            else:  # [B * heads, L, S]
                heads, kv_len = self.attn.num_heads, attn_mask.shape[-1]
                attn_mask = attn_mask.view(x.shape[0], heads, -1, kv_len)[rows, :, query_index]
                attn_mask = attn_mask.reshape(x.shape[0] * heads, 1, kv_len)
        query = normed[rows, query_index].unsqueeze(1)
        x = x[rows, query_index].unsqueeze(1) + self.ls_1(
            multihead_attention(self.attn, query, normed, attn_mask)
        )
        return x + self.ls_2(self.mlp(self.ln_2(x)))


def residual_blocks(
    layers: int,
    width: int,
    heads: int,
    mlp_ratio: float,
    ls_init_value: float | None,
    act_layer: Callable[[], nn.Module],
    norm_layer: Callable[[int], nn.Module],
    is_cross_attention: bool = False,
) -> nn.ModuleList:
    """``layers`` residual attention blocks of one configuration."""
    return nn.ModuleList(
        [
            ResidualAttentionBlock(
                width,
                heads,
                mlp_ratio,
                ls_init_value=ls_init_value,
                act_layer=act_layer,
                norm_layer=norm_layer,
                is_cross_attention=is_cross_attention,
            )
            for _ in range(layers)
        ]
    )


class Transformer(nn.Module):
    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        mlp_ratio: float = 4.0,
        ls_init_value: float | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
    ) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.grad_checkpointing = False
        self.resblocks = residual_blocks(
            layers, width, heads, mlp_ratio, ls_init_value, act_layer, norm_layer
        )

    def get_cast_dtype(self) -> torch.dtype:
        return self.resblocks[0].mlp.c_fc.weight.dtype

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        query_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, L, D] -> [B, L, D], or [B, 1, D] when `query_index` names the one token per row that is needed.

        The saving is skipped when hooks watch the last block, so they still see every token.
        """
        if query_index is not None and _has_hooks(self.resblocks[-1]):
            x = self.forward(x, attn_mask)
            return x[torch.arange(x.shape[0], device=x.device), query_index].unsqueeze(1)
        last = len(self.resblocks) - 1
        for i, block in enumerate(self.resblocks):
            index = query_index if i == last else None
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, None, attn_mask, index, use_reentrant=False)
            else:
                x = block(x, attn_mask=attn_mask, query_index=index)
        return x


def _has_hooks(module: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def reject_custom_block(cfg: dict, tower: str) -> None:
    """The custom attention block (qk_norm, scaled cosine attention, ...) is not implemented: say so."""
    from clipctl.errors import ClipctlError

    used = [flag for flag in CUSTOM_BLOCK_FLAGS if cfg.get(flag)]
    if used or cfg.get("block_type") not in (None, "default"):
        raise ClipctlError(
            f"{tower}: custom attention block options are not supported: {', '.join(used) or cfg.get('block_type')}"
        )
