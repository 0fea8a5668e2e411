"""Text tokenizers: CLIP's BPE (``SimpleTokenizer``) and Hugging Face wrappers (``HFTokenizer``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from clipctl.constants import DEFAULT_CONTEXT_LENGTH
from clipctl.tokenizer.bpe import SimpleTokenizer
from clipctl.tokenizer.hf import HFTokenizer
from clipctl.tokenizer.text_cleaning import basic_clean, canonicalize_text, get_clean_fn

__all__ = [
    "HFTokenizer",
    "SimpleTokenizer",
    "Tokenizer",
    "basic_clean",
    "build_tokenizer",
    "canonicalize_text",
    "decode",
    "get_clean_fn",
    "tokenize",
]

Tokenizer = SimpleTokenizer | HFTokenizer


def build_tokenizer(
    text_cfg: Mapping[str, Any] | None,
    context_length: int | None = None,
    *,
    tokenizer_source: str | Path | None = None,
    cache_dir: str | None = None,
    **kwargs: Any,
) -> Tokenizer:
    """The tokenizer a text tower was trained with, from its ``text_cfg``.

    ``hf_tokenizer_name`` selects a Hugging Face tokenizer (loaded from ``tokenizer_source`` instead when
    given, e.g. a ``local-dir:`` model folder); otherwise CLIP's BPE. ``tokenizer_kwargs`` from the config
    are applied first, then ``kwargs``. Context length: argument, else the config's, else 77.
    """
    text_cfg = text_cfg or {}
    if context_length is None:
        context_length = text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH)
    tokenizer_kwargs = {**(text_cfg.get("tokenizer_kwargs") or {}), **kwargs}
    hf_name = tokenizer_source or text_cfg.get("hf_tokenizer_name")
    if hf_name:
        tokenizer_kwargs.setdefault("tokenizer_mode", text_cfg.get("tokenizer_mode"))
        return HFTokenizer(
            str(hf_name), context_length=context_length, cache_dir=cache_dir, **tokenizer_kwargs
        )
    return SimpleTokenizer(context_length=context_length, **tokenizer_kwargs)


@lru_cache(maxsize=1)
def _default_tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH) -> torch.LongTensor:
    """CLIP BPE ids of ``texts`` as a ``[N, context_length]`` LongTensor (OpenAI's ``clip.tokenize``)."""
    return _default_tokenizer()(texts, context_length=context_length)


def decode(ids: Iterable[int] | torch.Tensor) -> str:
    """Text of one sequence of CLIP BPE ids."""
    return _default_tokenizer().decode(ids)
