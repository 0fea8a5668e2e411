"""Image-text retrieval metrics (mean/median rank, R@1/5/10 in both directions), computed in chunks.

OpenCLIP's validation builds the full ``N x N`` similarity matrix and sorts every row, so memory grows as N²
(mlfoundations/open_clip#11, #436). Here only ``chunk x N`` scores exist at any time, and a rank is a count
instead of a sort: the rank of the right answer is the number of candidates scoring strictly higher, plus the
number of candidates that tie with it and come earlier (lower index). That is its position in a *stable*
descending sort, so ties are broken the same way on every run and every device.

With several captions per image (COCO, Flickr), an image's rank is that of its best-placed caption, and each
caption's rank is that of its own image -- the recall@k that CLIP-like papers and CLIP_benchmark report.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

RECALL_KS = (1, 5, 10)
# Scores held at once per chunk (float32): 2**24 is 64 MiB, whatever N.
DEFAULT_CHUNK_ELEMENTS = 1 << 24


def auto_chunk_size(num_candidates: int, max_elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    return max(1, max_elements // max(1, num_candidates))


def score_chunks(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    chunk_size: int,
    scale: torch.Tensor | float | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, scores)`` with ``scores = scale * queries[start:start+chunk] @ candidates.T``, chunk by chunk."""
    for start in range(0, len(queries), chunk_size):
        block = queries[start : start + chunk_size]
        if scale is not None:
            block = scale * block
        yield start, block @ candidates.T


def _stable_rank(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based position of column ``target[i]`` in row ``i`` of ``scores`` sorted descending, ties by index."""
    target_scores = scores.gather(1, target[:, None])
    higher = (scores > target_scores).sum(dim=1)
    equal = scores == target_scores
    tied = (
        equal.sum(dim=1) > 1
    )  # more than the target itself: rare, so only those rows pay for the index test
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        columns = torch.arange(scores.shape[1], device=scores.device)
        before = (equal[rows] & (columns[None, :] < target[rows, None])).sum(dim=1)
        higher = higher.index_add(0, rows, before)
    return higher


def caption_columns(text_image_index: torch.Tensor, num_images: int) -> torch.Tensor:
    """``[num_images, max captions]``: each image's caption indices, ascending, padded with -1."""
    order = torch.argsort(
        text_image_index, stable=True
    )  # captions grouped by image, ascending within a group
    counts = torch.bincount(text_image_index, minlength=num_images)
    starts = torch.cumsum(counts, 0) - counts
    width = int(counts.max()) if num_images else 0
    slots = torch.arange(width)
    positions = starts[:, None] + slots[None, :]
    valid = slots[None, :] < counts[:, None]
    return torch.where(valid, order[positions.clamp(max=len(order) - 1)], torch.full_like(positions, -1))


def ranks_image_to_text(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_image_index: torch.Tensor,
    *,
    logit_scale: torch.Tensor | float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """For each image, the 0-based rank of its best-placed caption among all captions (the first of its
    captions in a stable descending sort: highest score, then lowest index)."""
    chunk_size = chunk_size or auto_chunk_size(len(text_features))
    ranks = torch.empty(len(image_features), dtype=torch.long)
    columns = caption_columns(text_image_index.cpu(), len(image_features)).to(image_features.device)
    for start, scores in score_chunks(image_features, text_features, chunk_size, logit_scale):
        own = columns[start : start + len(scores)]
        own_scores = scores.gather(1, own.clamp(min=0)).masked_fill(own < 0, float("-inf"))
        best = own_scores.argmax(dim=1, keepdim=True)  # the first maximal entry: lowest caption index
        target = own.gather(1, best).squeeze(1)
        ranks[start : start + len(scores)] = _stable_rank(scores, target).cpu()
    return ranks


def ranks_text_to_image(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_image_index: torch.Tensor,
    *,
    logit_scale: torch.Tensor | float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """For each caption, the 0-based rank of its image among all images."""
    chunk_size = chunk_size or auto_chunk_size(len(image_features))
    ranks = torch.empty(len(text_features), dtype=torch.long)
    text_image_index = text_image_index.to(text_features.device)
    for start, scores in score_chunks(text_features, image_features, chunk_size, logit_scale):
        target = text_image_index[start : start + len(scores)]
        ranks[start : start + len(scores)] = _stable_rank(scores, target).cpu()
    return ranks


def summarize_ranks(ranks: torch.Tensor, prefix: str, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """OpenCLIP's keys: ``{prefix}_mean_rank`` (1-based mean), ``_median_rank`` (floor of the median, 1-based)
    and ``_R@k`` (fraction ranked within the first k)."""
    as_float = ranks.double()
    metrics = {
        f"{prefix}_mean_rank": float(as_float.mean()) + 1,
        # numpy's median (mean of the two middle values for even N), floored, as OpenCLIP reports it
        f"{prefix}_median_rank": float(np.floor(np.median(ranks.numpy()))) + 1,
    }
    for k in ks:
        metrics[f"{prefix}_R@{k}"] = float((ranks < k).double().mean())
    return metrics


def _check_features(image_features: torch.Tensor, text_features: torch.Tensor) -> None:
    if image_features.ndim != 2 or text_features.ndim != 2:
        raise ValueError("features must be 2-D [N, dim]")
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError(
            f"image and text features differ in width: {image_features.shape[1]} vs {text_features.shape[1]}"
        )
    if len(image_features) == 0 or len(text_features) == 0:
        raise ValueError("retrieval metrics need at least one image and one text")


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Retrieval metrics for paired features (row ``i`` of each is one pair), as OpenCLIP's ``get_clip_metrics``.

    ``chunk_size`` rows are scored at a time (default: as many as fit 2**24 scores), so memory is
    ``O(chunk_size * N)``, never ``O(N²)``.
    """
    _check_features(image_features, text_features)
    if len(image_features) != len(text_features):
        raise ValueError(
            f"paired retrieval needs as many images as texts, got {len(image_features)} and {len(text_features)}"
        )
    pairs = torch.arange(len(text_features))
    return multi_caption_retrieval_metrics(
        image_features, text_features, pairs, logit_scale=logit_scale, chunk_size=chunk_size
    )


def multi_caption_retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_image_index: torch.Tensor,
    *,
    logit_scale: torch.Tensor | float | None = None,
    chunk_size: int | None = None,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """Like :func:`retrieval_metrics`, with ``text_image_index[j]`` naming the image that caption ``j`` describes."""
    _check_features(image_features, text_features)
    text_image_index = torch.as_tensor(text_image_index, dtype=torch.long)
    if text_image_index.shape != (len(text_features),):
        raise ValueError("text_image_index needs one image index per text")
    if int(text_image_index.min()) < 0 or int(text_image_index.max()) >= len(image_features):
        raise ValueError("text_image_index holds an index outside the images")
    if int(torch.bincount(text_image_index, minlength=len(image_features)).min()) == 0:
        raise ValueError("every image needs at least one text")
    common = dict(logit_scale=logit_scale, chunk_size=chunk_size)
    metrics = summarize_ranks(
        ranks_image_to_text(image_features, text_features, text_image_index, **common), "image_to_text", ks
    )
    metrics.update(
        summarize_ranks(
            ranks_text_to_image(image_features, text_features, text_image_index, **common),
            "text_to_image",
            ks,
        )
    )
    return metrics


def clip_benchmark_retrieval_metrics(
    metrics: dict[str, float], ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """CLIP_benchmark's names: ``image_retrieval_recall@k`` is text -> image, ``text_retrieval_recall@k`` is
    image -> text."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = metrics[f"text_to_image_R@{k}"]
        out[f"text_retrieval_recall@{k}"] = metrics[f"image_to_text_R@{k}"]
    return out
