"""Vision Transformer tower (OpenAI CLIP / OpenCLIP layout)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from clipctl.models.layers import LayerNorm, PatchDropout, to_2tuple
from clipctl.models.transformer import Transformer, multihead_attention


class AttentionalPooler(nn.Module):
    """Learned queries cross-attending to the tokens (CoCa)."""

    def __init__(
        self,
        d_model: int,
        context_dim: int,
        n_head: int = 8,
        n_queries: int = 256,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
    ) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.attn = nn.MultiheadAttention(
            d_model, n_head, kdim=context_dim, vdim=context_dim, batch_first=True
        )
        self.ln_q = norm_layer(d_model)
        self.ln_k = norm_layer(context_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_k(x)
        q = self.ln_q(self.query).unsqueeze(0).expand(x.shape[0], -1, -1)
        return multihead_attention(self.attn, q, x)


def sincos_2d_pos_embed(width: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position table with a leading zero row for the class token (MAE layout)."""
    if width % 4:
        raise ValueError("sin_cos_2d position embedding needs a width divisible by 4")
    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    omega = 1.0 / 10000 ** (np.arange(width // 4, dtype=np.float64) / (width / 4.0))

    def axis(pos: np.ndarray) -> np.ndarray:
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([axis(gh), axis(gw)], axis=1)
    table = np.concatenate([np.zeros((1, width)), table], axis=0)
    return torch.from_numpy(table).float()


class VisionTransformer(nn.Module):
    def __init__(
        self,
        image_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        width: int,
        layers: int,
        heads: int,
        mlp_ratio: float,
        ls_init_value: float | None = None,
        attentional_pool: bool | str = False,
        attn_pooler_queries: int = 256,
        attn_pooler_heads: int = 8,
        output_dim: int = 512,
        patch_dropout: float = 0.0,
        no_ln_pre: bool = False,
        pos_embed_type: str = "learnable",
        pool_type: str = "tok",
        final_ln_after_pool: bool = False,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        output_tokens: bool = False,
    ) -> None:
        super().__init__()
        if pool_type not in ("tok", "avg", "none"):
            raise ValueError(f"unknown vision pool_type {pool_type!r}")
        self.output_tokens = output_tokens
        self.image_size = to_2tuple(image_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        self.final_ln_after_pool = final_ln_after_pool
        self.output_dim = output_dim

        self.conv1 = nn.Conv2d(3, width, kernel_size=self.patch_size, stride=self.patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        num_pos = self.grid_size[0] * self.grid_size[1] + 1
        if pos_embed_type == "learnable":
            self.positional_embedding = nn.Parameter(scale * torch.randn(num_pos, width))
        elif pos_embed_type == "sin_cos_2d":
            if self.grid_size[0] != self.grid_size[1]:
                raise ValueError("sin_cos_2d position embedding needs a square grid")
            table = sincos_2d_pos_embed(width, self.grid_size[0])
            self.positional_embedding = nn.Parameter(table, requires_grad=False)
        else:
            raise ValueError(f"unknown pos_embed_type {pos_embed_type!r}")

        self.patch_dropout = PatchDropout(patch_dropout) if patch_dropout > 0.0 else nn.Identity()
        self.ln_pre = nn.Identity() if no_ln_pre else norm_layer(width)
        self.transformer = Transformer(
            width,
            layers,
            heads,
            mlp_ratio,
            ls_init_value=ls_init_value,
            act_layer=act_layer,
            norm_layer=norm_layer,
        )

        self.attn_pool_type = ""
        self.attn_pool_contrastive: nn.Module | None = None
        if attentional_pool:
            if isinstance(attentional_pool, str):
                if attentional_pool not in ("parallel", "cascade"):
                    raise ValueError(f"unknown attentional_pool {attentional_pool!r}")
                self.attn_pool_type = attentional_pool
                self.pool_type = "none"
                self.attn_pool = AttentionalPooler(output_dim, width, attn_pooler_heads, attn_pooler_queries)
                self.attn_pool_contrastive = AttentionalPooler(output_dim, width, attn_pooler_heads, 1)
            else:
                self.pool_type = pool_type
                self.attn_pool = AttentionalPooler(output_dim, width, attn_pooler_heads, attn_pooler_queries)
            pool_dim = output_dim
        else:
            self.attn_pool = None
            self.pool_type = pool_type
            pool_dim = width
        self.ln_post = norm_layer(pool_dim)
        self.proj = nn.Parameter(scale * torch.randn(pool_dim, output_dim))

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the tower, leaving the last `unlocked_groups` groups trainable (LiT)."""
        for param in self.parameters():
            param.requires_grad = False
        if not unlocked_groups:
            return
        blocks = list(self.transformer.resblocks)
        groups: list[list[nn.Module | nn.Parameter]] = [
            [self.conv1, self.class_embedding, self.positional_embedding, self.ln_pre],
            *[[b] for b in blocks[:-1]],
            [blocks[-1], self.ln_post],
            [self.proj],
        ]
        for group in groups[-unlocked_groups:]:
            for item in group:
                params = [item] if isinstance(item, nn.Parameter) else item.parameters()
                for param in params:
                    param.requires_grad = True

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {"positional_embedding", "class_embedding"}

    def _global_pool(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pool_type == "avg":
            return x[:, 1:].mean(dim=1), x[:, 1:]
        if self.pool_type == "tok":
            return x[:, 0], x[:, 1:]
        return x, x

    def _embeds(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.patch_dropout(x)
        return self.ln_pre(x)

    def _pool(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.attn_pool is not None:
            if self.attn_pool_contrastive is not None:
                x = self.ln_post(x)
                tokens = self.attn_pool(x)
                source = x if self.attn_pool_type == "parallel" else tokens
                pooled = self.attn_pool_contrastive(source)
                return pooled, tokens
            # OpenCLIP's released CoCa weights were trained with this order (pool, LN, take query 0).
            x = self.ln_post(self.attn_pool(x))
            return self._global_pool(x)
        if self.final_ln_after_pool:
            pooled, tokens = self._global_pool(x)
            return self.ln_post(pooled), tokens
        return self._global_pool(self.ln_post(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self._embeds(x)
        if self.attn_pool is None and self.pool_type == "tok" and not self.output_tokens:
            # only the class token is used: the last block computes just its output
            x = self.transformer(x, query_index=torch.zeros(x.shape[0], dtype=torch.long, device=x.device))
        else:
            x = self.transformer(x)
        pooled, tokens = self._pool(x)
        if self.proj is not None:
            pooled = pooled @ self.proj
        if self.output_tokens:
            return pooled, tokens
        return pooled
