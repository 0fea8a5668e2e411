"""CLIP's byte-level BPE tokenizer (the 49,408-token vocabulary every OpenAI/LAION CLIP text tower uses)."""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import regex
import torch

from clipctl.constants import DEFAULT_CONTEXT_LENGTH
from clipctl.errors import ClipctlError
from clipctl.tokenizer.text_cleaning import get_clean_fn

DEFAULT_BPE_PATH = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
# The vocabulary file holds more merges than CLIP was trained with; the model saw only the first 48,894.
NUM_MERGES = 49152 - 256 - 2
REDUCTION_MASKS = ("simple", "random", "shuffle")
_WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_CACHE_LIMIT = 200_000


@lru_cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, so BPE never sees whitespace or controls."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@lru_cache(maxsize=4)
def _load_merges(bpe_path: str) -> tuple[tuple[str, str], ...]:
    try:
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise ClipctlError(f"cannot read BPE vocabulary {bpe_path}: {e}") from e
    # Line 0 is a version header.
    return tuple(tuple(line.split()) for line in lines[1 : NUM_MERGES + 1])


class SimpleTokenizer:
    """Cleans, splits and BPE-encodes captions into fixed-length id tensors, ids identical to OpenCLIP's."""

    def __init__(
        self,
        context_length: int | None = DEFAULT_CONTEXT_LENGTH,
        clean: str = "lower",
        additional_special_tokens: Sequence[str] | None = None,
        *,
        bpe_path: str | Path | None = None,
        reduction_mask: str = "",
    ):
        self.context_length = context_length
        self.clean = clean
        self.clean_fn = get_clean_fn(clean)
        if reduction_mask and reduction_mask not in REDUCTION_MASKS:
            raise ClipctlError(
                f"unsupported tokenizer reduction_mask {reduction_mask!r}; supported: {', '.join(REDUCTION_MASKS)}"
            )
        self.reduction_mask = reduction_mask

        merges = _load_merges(str(bpe_path or DEFAULT_BPE_PATH))
        self.byte_encoder = byte_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        base = list(self.byte_encoder.values())
        vocab = [*base, *(c + "</w>" for c in base), *("".join(m) for m in merges)]
        special_tokens = [*SPECIAL_TOKENS, *(additional_special_tokens or ())]
        vocab.extend(special_tokens)
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}
        self.decoder: dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks: dict[tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self.special_tokens = special_tokens
        self.all_special_ids = [self.encoder[t] for t in special_tokens]
        self.sot_token_id, self.eot_token_id = self.all_special_ids[:2]
        self.vocab_size = len(self.encoder)
        # Special-token text inside a caption is matched as one piece (case-insensitively, like CLIP); only an
        # exact spelling maps to the special id, other spellings are BPE-encoded like any word.
        alternatives = "|".join(regex.escape(t) for t in special_tokens)
        self.pattern = regex.compile(f"{alternatives}|{_WORD_PATTERN}", regex.IGNORECASE)
        # Captions repeat words heavily; caching word -> ids makes tokenizing large corpora cheap.
        self._cache: dict[str, tuple[int, ...]] = {t: (self.encoder[t],) for t in special_tokens}

    def bpe(self, word: str) -> list[str]:
        """Merge the byte-encoded characters of one word by merge rank; returns the BPE pieces."""
        symbols = [*word[:-1], word[-1] + "</w>"]
        ranks = self.bpe_ranks
        while len(symbols) > 1:
            best_rank, best = None, None
            for pair in zip(symbols, symbols[1:], strict=False):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best = rank, pair
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i, n = 0, len(symbols)
            while i < n:
                if i < n - 1 and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def _word_ids(self, word: str) -> tuple[int, ...]:
        ids = self._cache.get(word)
        if ids is None:
            encoded = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids = tuple(self.encoder[piece] for piece in self.bpe(encoded))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache = {t: (self.encoder[t],) for t in self.special_tokens}
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of one caption, without start/end tokens or padding."""
        ids: list[int] = []
        for word in self.pattern.findall(self.clean_fn(text)):
            ids.extend(self._word_ids(word))
        return ids

    def decode(self, tokens: Iterable[int] | torch.Tensor) -> str:
        """Text of a sequence of ids; special tokens and padding ids are decoded as they are, like OpenCLIP."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.flatten().tolist()
        pieces = []
        for token in tokens:
            piece = self.decoder.get(int(token))
            if piece is None:
                raise ClipctlError(
                    f"token id {int(token)} is outside the vocabulary (size {self.vocab_size})"
                )
            pieces.append(piece)
        data = bytearray(self.byte_decoder[c] for c in "".join(pieces) if c in self.byte_decoder)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.LongTensor:
        """Ids of each caption as a zero-padded ``[len(texts), context_length]`` LongTensor.

        A caption longer than the context is cut and its last position set to the end token, because text
        towers pool at the end token.
        """
        if isinstance(texts, str):
            texts = [texts]
        context_length = context_length or self.context_length
        if not context_length or context_length < 2:
            raise ClipctlError(f"tokenizer context length must be at least 2, got {context_length!r}")
        if self.reduction_mask:
            return self._reduced(texts, context_length)
        rows = []
        for text in texts:
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_token_id
            rows.append(ids + [0] * (context_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), context_length)

    def _reduced(self, texts: Sequence[str], context_length: int) -> torch.LongTensor:
        """CLIPA-style shortening: keep ``context_length - 2`` of a long caption's tokens instead of its head."""
        keep = context_length - 2
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.encode(text)
            if len(ids) > keep:
                if self.reduction_mask == "simple":
                    start = random.randint(0, len(ids) - keep)
                    ids = ids[start : start + keep]
                else:
                    picked = torch.randperm(len(ids))[:keep]
                    if self.reduction_mask == "random":
                        picked = picked.sort().values
                    ids = [ids[i] for i in picked.tolist()]
            ids = [self.sot_token_id, *ids, self.eot_token_id]
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result
