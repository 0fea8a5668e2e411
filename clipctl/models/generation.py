"""Token generation for CoCa: logit processors, top-k / top-p sampling and (group) beam search.

Written without `transformers`; the processors follow the usual definitions (min length bans EOS,
repetition penalty divides positive / multiplies negative scores of seen tokens, top-p keeps the smallest
set of tokens whose probability mass reaches p).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


def apply_min_length(scores: torch.Tensor, cur_len: int, min_length: int, eos_token_id: int) -> torch.Tensor:
    if cur_len < min_length:
        scores = scores.clone()
        scores[:, eos_token_id] = NEG_INF
    return scores


def apply_repetition_penalty(scores: torch.Tensor, tokens: torch.Tensor, penalty: float) -> torch.Tensor:
    if penalty == 1.0:
        return scores
    seen = torch.gather(scores, 1, tokens)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, tokens, seen)


def apply_top_k(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    k = max(1, min(int(top_k), scores.shape[-1]))
    kth = torch.topk(scores, k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < kth, NEG_INF)


def apply_top_p(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the most probable tokens whose cumulative probability reaches `top_p` (at least one)."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1] = False
    remove = remove_sorted.scatter(1, order, remove_sorted)
    return scores.masked_fill(remove, NEG_INF)


def sample_tokens(
    next_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    prompt: torch.Tensor,
    *,
    max_length: int,
    window: int,
    min_length: int,
    eos_token_id: int,
    pad_token_id: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    fixed_output_length: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample until every row ended (EOS or pad) or the length reaches `max_length`.

    `next_logits(tokens, rows)` gives next-token logits for the selected rows. The last position before
    `max_length` is forced to EOS so each unfinished caption is terminated.
    """
    out = prompt
    device = prompt.device
    while out.shape[1] < max_length:
        ended = (out[:, -1] == eos_token_id) | (out[:, -1] == pad_token_id)
        if ended.all() and not fixed_output_length:
            break
        sample = torch.full((out.shape[0], 1), pad_token_id, dtype=torch.long, device=device)
        if not ended.all():
            rows = (~ended).nonzero(as_tuple=True)[0]
            x = out[rows, -window:]
            cur_len = x.shape[1]
            scores = next_logits(x, rows).float()
            scores = apply_min_length(scores, cur_len, min_length, eos_token_id)
            scores = apply_repetition_penalty(scores, x, repetition_penalty)
            if top_k is not None:
                scores = apply_top_k(scores, top_k)
            if top_p is not None:
                scores = apply_top_p(scores, top_p)
            if cur_len + 1 == max_length:
                sample[rows] = eos_token_id
            else:
                probs = F.softmax(scores / temperature, dim=-1)
                sample[rows] = torch.multinomial(probs, 1, generator=generator)
        out = torch.cat([out, sample], dim=1)
    return out


class _Hypotheses:
    """Finished beams of one (sentence, group), best `size` kept, each scored by its summed score / length.

    The length is given by the caller: a beam ended by EOS counts the EOS (which is not stored), a beam still
    open when the search stops counts only its tokens; Hugging Face's `BeamSearchScorer`, which OpenCLIP's
    CoCa drives, scores them the same way, so the chosen captions agree.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[tuple[float, torch.Tensor]] = []
        self.done = False

    def worst(self) -> float:
        return min(score for score, _ in self.items) if self.items else float("inf")

    def add(self, tokens: torch.Tensor, sum_score: float, length: int) -> None:
        score = sum_score / length
        if len(self.items) < self.size or score > self.worst():
            self.items.append((score, tokens))
            if len(self.items) > self.size:
                # the first of equally bad items goes
                self.items.remove(min(self.items, key=lambda item: item[0]))

    def is_done(self, best_sum_score: float, length: int) -> bool:
        """No open beam can beat the kept ones any more (the best next score, normalised by `length`)."""
        if len(self.items) < self.size:
            return False
        return self.worst() >= best_sum_score / length


class _GroupBeamSearch:
    """The state of a group beam search over `batch_size` sentences of `num_beams` rows each.

    Rows are laid out sentence by sentence; within a sentence, group `g` owns rows
    `g * group_size ... (g + 1) * group_size - 1`.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        num_beams: int,
        num_beam_groups: int,
        eos_token_id: int,
        pad_token_id: int,
        min_length: int,
        repetition_penalty: float,
        device: torch.device | str,
    ) -> None:
        self.batch_size, self.num_beams, self.num_groups = batch_size, num_beams, num_beam_groups
        self.group_size = num_beams // num_beam_groups
        self.eos, self.pad = eos_token_id, pad_token_id
        self.min_length, self.repetition_penalty = min_length, repetition_penalty
        self.device = device
        # only each group's first beam starts live, so the groups do not all follow the same path
        scores = torch.full((batch_size, num_beams), -1e9, device=device)
        scores[:, :: self.group_size] = 0
        self.beam_scores = scores.view(-1)
        self.hyps = [
            [_Hypotheses(self.group_size) for _ in range(num_beam_groups)] for _ in range(batch_size)
        ]

    def done(self) -> bool:
        return all(h.done for row in self.hyps for h in row)

    def group_rows(self, g: int) -> torch.Tensor:
        start = g * self.group_size
        rows = [
            b * self.num_beams + start + i for b in range(self.batch_size) for i in range(self.group_size)
        ]
        return torch.tensor(rows, device=self.device)

    def step(self, tokens: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Extend every row by one token (pad for finished groups); returns the new [rows, L + 1] tokens."""
        new_tokens = tokens.clone()
        next_column = torch.full((tokens.shape[0],), self.pad, dtype=torch.long, device=self.device)
        for g in range(self.num_groups):
            idx = self.group_rows(g)
            src, tok, scores = self._advance_group(g, tokens[idx], logits[idx], self.beam_scores[idx])
            flat_src = (
                src + torch.arange(self.batch_size, device=self.device).unsqueeze(1) * self.group_size
            ).view(-1)
            self.beam_scores[idx] = scores.view(-1)
            new_tokens[idx] = tokens[idx][flat_src]
            next_column[idx] = tok.view(-1)
        return torch.cat([new_tokens, next_column.unsqueeze(1)], dim=1)

    def _advance_group(
        self, g: int, group_tokens: torch.Tensor, logits: torch.Tensor, beam_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source beam, next token and summed score of each of group `g`'s next beams, [batch, group_size]."""
        cur_len = group_tokens.shape[1]
        scores = apply_min_length(logits, cur_len, self.min_length, self.eos)
        scores = apply_repetition_penalty(scores, group_tokens, self.repetition_penalty)
        vocab = scores.shape[-1]
        scores = (scores + beam_scores.unsqueeze(-1)).view(self.batch_size, self.group_size * vocab)
        top_scores, top_ids = torch.topk(scores, 2 * self.group_size, dim=1)
        src_beam, top_tok = top_ids // vocab, top_ids % vocab
        shape = (self.batch_size, self.group_size)
        new_src = torch.zeros(shape, dtype=torch.long, device=self.device)
        new_tok = torch.full(shape, self.pad, dtype=torch.long, device=self.device)
        new_scores = torch.zeros(shape, device=self.device)
        for b in range(self.batch_size):
            hyp = self.hyps[b][g]
            if hyp.done:
                continue
            sentence_tokens = group_tokens[b * self.group_size : (b + 1) * self.group_size]
            candidates = zip(top_tok[b].tolist(), src_beam[b].tolist(), top_scores[b].tolist(), strict=True)
            for i, (tok, src, score) in enumerate(self._continue_beams(hyp, candidates, sentence_tokens)):
                new_scores[b, i], new_tok[b, i], new_src[b, i] = score, tok, src
            hyp.done = hyp.is_done(float(top_scores[b].max()), cur_len + 1)
        return new_src, new_tok, new_scores

    def _continue_beams(
        self, hyp: _Hypotheses, candidates: Iterable[tuple[int, int, float]], sentence_tokens: torch.Tensor
    ) -> list[tuple[int, int, float]]:
        """The best `group_size` candidates (token, source beam, score) that do not end their beam.

        A candidate ending in EOS among the first `group_size` finishes its beam into `hyp`; its length counts
        the EOS just chosen.
        """
        kept: list[tuple[int, int, float]] = []
        cur_len = sentence_tokens.shape[1]
        for rank, (tok, src, score) in enumerate(candidates):
            if tok == self.eos:
                if rank < self.group_size:
                    hyp.add(sentence_tokens[src].clone(), score, cur_len + 1)
                continue
            kept.append((tok, src, score))
            if len(kept) == self.group_size:
                break
        return kept

    def best_sequences(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Each sentence's best sequence; beams still live when the search stops compete with the finished."""
        for b, g in itertools.product(range(self.batch_size), range(self.num_groups)):
            hyp = self.hyps[b][g]
            if hyp.done:
                continue
            first_row = b * self.num_beams + g * self.group_size
            for row in range(first_row, first_row + self.group_size):
                hyp.add(tokens[row].clone(), float(self.beam_scores[row]), tokens.shape[1])
        return [_best([item for hyp in row for item in hyp.items]) for row in self.hyps]


def _best(candidates: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """The highest scoring sequence; of equal scores the last one wins, as with a stable sort."""
    best = candidates[0]
    for item in candidates[1:]:
        if item[0] >= best[0]:
            best = item
    return best[1]


def _end_and_pad(sequences: list[torch.Tensor], max_length: int, eos: int, pad: int, device) -> torch.Tensor:
    """One [len(sequences), L] tensor: each sequence cut to L, followed by EOS when shorter, then pad."""
    out_len = min(max(len(s) for s in sequences) + 1, max_length)
    out = torch.full((len(sequences), out_len), pad, dtype=torch.long, device=device)
    for b, seq in enumerate(sequences):
        seq = seq[:out_len]
        out[b, : len(seq)] = seq
        if len(seq) < out_len:
            out[b, len(seq)] = eos
    return out


def beam_search(
    next_logits: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    num_beams: int,
    num_beam_groups: int,
    sot_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    max_length: int,
    min_length: int,
    repetition_penalty: float = 1.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Group beam search; returns the best finished sequence per sentence, [batch_size, <= max_length].

    Beams are split into groups searched independently; only each group's first beam starts live, so the
    groups do not all follow the same path. Scores are the summed raw decoder logits, as in OpenCLIP's CoCa.
    `next_logits(tokens)` receives [batch_size * num_beams, L] and returns next-token logits.
    """
    search = _GroupBeamSearch(
        batch_size=batch_size,
        num_beams=num_beams,
        num_beam_groups=num_beam_groups,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        min_length=min_length,
        repetition_penalty=repetition_penalty,
        device=device,
    )
    tokens = torch.full((batch_size * num_beams, 1), sot_token_id, dtype=torch.long, device=device)
    while True:
        tokens = search.step(tokens, next_logits(tokens).float())
        if search.done() or tokens.shape[1] >= max_length:
            break
    return _end_and_pad(search.best_sequences(tokens), max_length, eos_token_id, pad_token_id, device)
