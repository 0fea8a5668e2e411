"""Chunked retrieval metrics: OpenCLIP's numbers, deterministic ties, several captions per image, and memory that
does not grow as N²."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import clipctl.eval.retrieval as retrieval
from clipctl.eval.retrieval import (
    clip_benchmark_retrieval_metrics,
    multi_caption_retrieval_metrics,
    retrieval_metrics,
)


def _features(n: int, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(img + 0.8 * torch.randn(n, dim, generator=g), dim=-1)
    return img, txt


def _openclip_metrics(img, txt, scale):
    from open_clip_train.train import get_clip_metrics

    return get_clip_metrics(img, txt, scale)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, None])
def test_matches_openclip_get_clip_metrics(chunk_size):
    pytest.importorskip("open_clip_train")
    img, txt = _features(53)
    scale = torch.tensor(14.3)
    ours = retrieval_metrics(img, txt, logit_scale=scale, chunk_size=chunk_size)
    ref = _openclip_metrics(img, txt, scale)
    assert set(ours) == set(ref)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(float(value), abs=1e-12), key


def _stable_reference_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return (order == target[:, None]).int().argmax(dim=1)


def test_ties_break_by_index_like_a_stable_sort():
    # Four distinct vectors, each repeated: every score ties with at least one other.
    base = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0, 1.0], [1, 1.0], [1, -1.0]]), dim=-1)
    img = base[[0, 1, 2, 3, 0, 1, 2, 3, 0]]
    txt = base[[0, 0, 1, 2, 3, 3, 2, 1, 0]]
    scores = img @ txt.T
    n = len(img)
    expected_i2t = _stable_reference_ranks(scores, torch.arange(n)).double()
    expected_t2i = _stable_reference_ranks(scores.T, torch.arange(n)).double()
    for chunk in (1, 2, 5, None):
        ours = retrieval_metrics(img, txt, chunk_size=chunk)
        assert ours["image_to_text_mean_rank"] == pytest.approx(float(expected_i2t.mean()) + 1)
        assert ours["text_to_image_mean_rank"] == pytest.approx(float(expected_t2i.mean()) + 1)
        assert ours["image_to_text_R@1"] == pytest.approx(float((expected_i2t < 1).double().mean()))
        assert ours["text_to_image_median_rank"] == np.floor(np.median(expected_t2i.numpy())) + 1
    # The same inputs always give the same numbers.
    assert retrieval_metrics(img, txt) == retrieval_metrics(img.clone(), txt.clone())


def test_identical_features_rank_by_position():
    img = torch.ones(6, 4) / 2
    ranks = retrieval.ranks_image_to_text(img, img, torch.arange(6), chunk_size=4)
    assert ranks.tolist() == [0, 1, 2, 3, 4, 5]


def _brute_force_multi(img, txt, owner, k):
    scores = img @ txt.T
    # text -> image: is the caption's image within its k best images (stable order)?
    t2i = _stable_reference_ranks(scores.T, owner)
    # image -> text: is any of the image's captions within its k best captions?
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
    i2t = torch.tensor([bool((owner[order[i]] == i).any()) for i in range(len(img))])
    return float((t2i < k).double().mean()), float(i2t.double().mean())


@pytest.mark.parametrize("chunk_size", [3, None])
def test_several_captions_per_image(chunk_size):
    g = torch.Generator().manual_seed(3)
    img = torch.nn.functional.normalize(torch.randn(12, 6, generator=g), dim=-1)
    owner = torch.tensor([i for i in range(12) for _ in range(1 + i % 3)])
    txt = torch.nn.functional.normalize(img[owner] + 1.2 * torch.randn(len(owner), 6, generator=g), dim=-1)
    ours = multi_caption_retrieval_metrics(img, txt, owner, chunk_size=chunk_size)
    for k in (1, 5, 10):
        t2i, i2t = _brute_force_multi(img, txt, owner, k)
        assert ours[f"text_to_image_R@{k}"] == pytest.approx(t2i)
        assert ours[f"image_to_text_R@{k}"] == pytest.approx(i2t)
    cb = clip_benchmark_retrieval_metrics(ours)
    assert cb["image_retrieval_recall@5"] == ours["text_to_image_R@5"]
    assert cb["text_retrieval_recall@5"] == ours["image_to_text_R@5"]


def test_bad_shapes_are_errors():
    img, txt = _features(4)
    with pytest.raises(ValueError, match="as many images as texts"):
        retrieval_metrics(img, txt[:3])
    with pytest.raises(ValueError, match="at least one text"):
        multi_caption_retrieval_metrics(img, txt, torch.tensor([0, 0, 1, 1]))


def test_only_chunks_of_scores_exist(monkeypatch):
    """Every score block is at most chunk_size x N, and the result equals the one-chunk computation."""
    n, chunk = 300, 16
    img, txt = _features(n, seed=5)
    sizes = []
    real = retrieval.score_chunks

    def recording(queries, candidates, chunk_size, scale=None):
        for start, scores in real(queries, candidates, chunk_size, scale):
            sizes.append(scores.numel())
            yield start, scores

    monkeypatch.setattr(retrieval, "score_chunks", recording)
    chunked = retrieval_metrics(img, txt, chunk_size=chunk)
    assert sizes and max(sizes) <= chunk * n
    assert chunked == retrieval_metrics(img, txt, chunk_size=n)
    # the default chunk size also stays far below N x N for large N
    assert retrieval.auto_chunk_size(1_000_000) * 1_000_000 <= retrieval.DEFAULT_CHUNK_ELEMENTS


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_peak_memory_stays_far_below_n_squared():
    """N = 20,000: an N x N float32 score matrix alone is 1.6 GB (OpenCLIP's argsort adds 3.2 GB of int64); chunks
    of 256 rows need tens of MB. The bar leaves room for allocator noise when other tests share the machine."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS counter (VmHWM), Linux >= 4.0
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    n = 20_000
    img, txt = _features(n, dim=4, seed=9)
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    metrics = retrieval_metrics(img, txt, chunk_size=256)
    grown = _status_bytes("VmHWM") - before
    assert 0 < metrics["image_to_text_R@10"] <= 1
    assert grown < 400 * 2**20, f"peak memory grew by {grown / 2**20:.0f} MiB"
