"""Hugging Face tokenizers for text towers built on HF models (RoBERTa, XLM-R, SigLIP's T5 vocab, ...)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from clipctl.constants import DEFAULT_CONTEXT_LENGTH
from clipctl.errors import ClipctlError
from clipctl.tokenizer.text_cleaning import get_clean_fn

TOKENIZER_MODES = ("", "clips")
_TRUE = ("1", "true", "yes", "on")


def hf_downloads_disabled() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def load_hf_tokenizer(name: str, cache_dir: str | None = None, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` that tries the local cache first and fails with one clear line."""
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ClipctlError(
            f"tokenizer {name} needs the 'transformers' package; install it with: pip install 'clipctl[hf]'"
        ) from e
    try:
        return AutoTokenizer.from_pretrained(name, cache_dir=cache_dir, local_files_only=True, **kwargs)
    except (OSError, ValueError) as local_error:
        if Path(name).is_dir():
            raise ClipctlError(f"cannot load tokenizer from directory {name}: {local_error}") from local_error
        if hf_downloads_disabled():
            raise ClipctlError(
                f"tokenizer {name} is not in the local Hugging Face cache and downloads are off; "
                f"unset HF_HUB_OFFLINE to download it, or copy its files into the cache"
            ) from local_error
    try:
        return AutoTokenizer.from_pretrained(name, cache_dir=cache_dir, **kwargs)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClipctlError(f"cannot load tokenizer {name} from the Hugging Face Hub: {first_line}") from e


class HFTokenizer:
    """Wraps a Hugging Face tokenizer with CLIP's cleaning and fixed-length ``[N, context_length]`` output."""

    def __init__(
        self,
        tokenizer_name: str | Path,
        context_length: int | None = DEFAULT_CONTEXT_LENGTH,
        clean: str = "whitespace",
        strip_sep_token: bool = False,
        language: str | None = None,
        cache_dir: str | None = None,
        tokenizer_mode: str | None = None,
        **kwargs: Any,
    ):
        self.tokenizer_mode = tokenizer_mode or ""
        if self.tokenizer_mode not in TOKENIZER_MODES:
            raise ClipctlError(f"unknown tokenizer_mode {tokenizer_mode!r}; known: clips")
        self.name = str(tokenizer_name)
        self.context_length = context_length
        self.clean_fn = get_clean_fn(clean)
        self.strip_sep_token = strip_sep_token
        self.tokenizer = load_hf_tokenizer(self.name, cache_dir=cache_dir, **kwargs)
        if language is not None:
            self.set_language(language)

    def save_pretrained(self, dest: str | Path) -> None:
        self.tokenizer.save_pretrained(dest)

    def set_language(self, src_lang: str) -> None:
        # Only multilingual seq2seq tokenizers (NLLB, M2M) can switch their language tokens.
        set_lang = getattr(self.tokenizer, "set_src_lang_special_tokens", None)
        if not callable(set_lang):
            warnings.warn(f"tokenizer {self.name} cannot set a source language", stacklevel=2)
            return
        set_lang(src_lang)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        context_length = context_length or self.context_length
        if not context_length:
            raise ClipctlError("tokenizer context length is not set")
        texts = [self.clean_fn(t) for t in texts]
        if self.tokenizer_mode == "clips":
            return self._clips_tokenize(texts, context_length)
        ids = self.tokenizer(
            texts, return_tensors="pt", max_length=context_length, padding="max_length", truncation=True
        ).input_ids
        if self.strip_sep_token:
            ids = torch.where(ids == self.tokenizer.sep_token_id, torch.zeros_like(ids), ids)
        return ids

    def _clips_tokenize(self, texts: list[str], context_length: int) -> torch.Tensor:
        """CLIPS layout: bos, text, eos, padding, and a class token in the last position."""
        tok = self.tokenizer
        if tok.bos_token_id is None or tok.eos_token_id is None:
            raise ClipctlError(
                f"tokenizer_mode 'clips' needs a tokenizer with bos and eos tokens; {self.name} lacks them"
            )
        encoded = tok(texts, add_special_tokens=False, padding=False, truncation=False)["input_ids"]
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        cls_id = tok.cls_token_id if tok.cls_token_id is not None else 101
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, ids in enumerate(encoded):
            body = [tok.bos_token_id, *ids[: context_length - 3], tok.eos_token_id][: context_length - 1]
            body += [pad_id] * (context_length - 1 - len(body))
            result[row] = torch.tensor([*body, cls_id], dtype=torch.long)
        return result
