"""Token generation for CoCa: logit processors, top-k / top-p sampling and (group) beam search.

Written without `transformers`; the processors follow the usual definitions (min length bans EOS,
repetition penalty divides positive / multiplies negative scores of seen tokens, top-p keeps the smallest
set of tokens whose probability mass reaches p).
"""

from __future__ import annotations

from collections.abc import Callable

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
    group_size = num_beams // num_beam_groups
    tokens = torch.full((batch_size * num_beams, 1), sot_token_id, dtype=torch.long, device=device)
    beam_scores = torch.full((batch_size, num_beams), -1e9, device=device)
    beam_scores[:, ::group_size] = 0
    beam_scores = beam_scores.view(-1)
    hyps = [[_Hypotheses(group_size) for _ in range(num_beam_groups)] for _ in range(batch_size)]

    while True:
        cur_len = tokens.shape[1]
        logits = next_logits(tokens).float()
        new_tokens = tokens.clone()
        next_column = torch.full((batch_size * num_beams,), pad_token_id, dtype=torch.long, device=device)
        for g in range(num_beam_groups):
            start = g * group_size
            idx = torch.tensor(
                [b * num_beams + start + i for b in range(batch_size) for i in range(group_size)],
                device=device,
            )
            group_tokens = tokens[idx]
            scores = apply_min_length(logits[idx], cur_len, min_length, eos_token_id)
            scores = apply_repetition_penalty(scores, group_tokens, repetition_penalty)
            vocab = scores.shape[-1]
            scores = (scores + beam_scores[idx].unsqueeze(-1)).view(batch_size, group_size * vocab)
            top_scores, top_ids = torch.topk(scores, 2 * group_size, dim=1)
            src_beam, top_tok = top_ids // vocab, top_ids % vocab
            new_scores = torch.zeros(batch_size, group_size, device=device)
            new_tok = torch.full((batch_size, group_size), pad_token_id, dtype=torch.long, device=device)
            new_src = torch.zeros(batch_size, group_size, dtype=torch.long, device=device)
            for b in range(batch_size):
                hyp = hyps[b][g]
                if hyp.done:
                    continue
                filled = 0
                for rank in range(2 * group_size):
                    tok, src, score = (
                        int(top_tok[b, rank]),
                        int(src_beam[b, rank]),
                        float(top_scores[b, rank]),
                    )
                    if tok == eos_token_id:
                        if rank < group_size:
                            # the beam ends here; its length counts the EOS just chosen
                            hyp.add(group_tokens[b * group_size + src].clone(), score, cur_len + 1)
                        continue
                    new_scores[b, filled], new_tok[b, filled], new_src[b, filled] = score, tok, src
                    filled += 1
                    if filled == group_size:
                        break
                hyp.done = hyp.is_done(float(top_scores[b].max()), cur_len + 1)
            flat_src = (new_src + torch.arange(batch_size, device=device).unsqueeze(1) * group_size).view(-1)
            beam_scores[idx] = new_scores.view(-1)
            new_tokens[idx] = group_tokens[flat_src]
            next_column[idx] = new_tok.view(-1)
        tokens = torch.cat([new_tokens, next_column.unsqueeze(1)], dim=1)
        if all(h.done for row in hyps for h in row) or tokens.shape[1] >= max_length:
            break

    # unfinished live beams compete with the finished ones
    results = []
    for b in range(batch_size):
        candidates: list[tuple[float, torch.Tensor]] = []
        for g in range(num_beam_groups):
            hyp = hyps[b][g]
            if not hyp.done:
                for i in range(group_size):
                    row = b * num_beams + g * group_size + i
                    hyp.add(tokens[row].clone(), float(beam_scores[row]), tokens.shape[1])
            candidates.extend(hyp.items)
        # of equal scores the last one wins, as with a stable sort
        best = candidates[0]
        for item in candidates[1:]:
            if item[0] >= best[0]:
                best = item
        results.append(best[1])
    out_len = min(max(len(r) for r in results) + 1, max_length)
    out = torch.full((batch_size, out_len), pad_token_id, dtype=torch.long, device=device)
    for b, seq in enumerate(results):
        seq = seq[:out_len]
        out[b, : len(seq)] = seq
        if len(seq) < out_len:
            out[b, len(seq)] = eos_token_id
    return out
