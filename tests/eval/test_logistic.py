"""The probe's logistic regression: scikit-learn's optimum, deterministic, CLIP_benchmark's weight-decay search."""

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from clipctl.eval.logistic import (
    classification_scores,
    fit_logistic_regression,
    search_weight_decay,
    weight_decay_grid,
)


def _clusters(n: int, dim: int = 24, classes: int = 6, seed: int = 0, offset: float = 3.0):
    """L2-normalised points around class centres that share a large common direction, like image embeddings."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    labels = torch.arange(n) % classes
    x = offset * torch.ones(dim) + centres[labels] + 1.5 * torch.randn(n, dim, generator=g)
    return x / x.norm(dim=1, keepdim=True), labels


def _objective(x, y, weight, bias, weight_decay):
    return float(
        torch.nn.functional.cross_entropy(x @ weight + bias, y) + weight_decay / 2 * (weight**2).sum()
    )


@pytest.mark.parametrize("weight_decay", [1e-4, 1e-2])
def test_reaches_scikit_learns_optimum(weight_decay):
    x, y = _clusters(300)
    probe = fit_logistic_regression(x, y, 6, weight_decay)
    # the same objective: scikit-learn's C is 1 / (weight_decay * n); its solution with a very tight tolerance
    reference = LogisticRegression(C=1 / (weight_decay * len(x)), tol=1e-10, max_iter=10_000).fit(
        x.numpy(), y.numpy()
    )
    best = _objective(
        x,
        y,
        torch.from_numpy(reference.coef_.T).float(),
        torch.from_numpy(reference.intercept_).float(),
        weight_decay,
    )
    ours = _objective(x, y, probe.weight, probe.bias, weight_decay)
    assert best * (1 - 1e-4) <= ours <= best * 1.001
    test_x, _ = _clusters(300, seed=1)
    agree = probe.logits(test_x).argmax(1) == torch.from_numpy(reference.predict(test_x.numpy()))
    assert agree.double().mean() > 0.97


def test_fit_is_deterministic_and_centring_keeps_raw_features_usable():
    x, y = _clusters(200)
    a, b = fit_logistic_regression(x, y, 6, 1e-3), fit_logistic_regression(x, y, 6, 1e-3)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    # the probe takes raw (uncentred) features: logits equal x @ W + b with the folded bias
    torch.testing.assert_close(a.logits(x), x @ a.weight + a.bias)


def test_search_narrows_around_the_peak_like_clip_benchmark():
    grid = weight_decay_grid()
    assert len(grid) == 97 and grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(1e2)
    peak = grid[37]
    calls = []

    def score(wd):
        calls.append(wd)
        return -abs(torch.log10(torch.tensor(wd / peak)).item())

    result = search_weight_decay(score)
    assert result.best == pytest.approx(peak)
    assert calls[:7] == [grid[i] for i in range(0, 97, 16)]  # the 7 coarse points first
    assert len(calls) == len(set(calls)) <= 7 + 2 * 4  # then at most two new points per narrowing step


def test_search_prefers_the_larger_weight_decay_on_a_tie():
    result = search_weight_decay(lambda wd: 0.5)
    assert result.best == pytest.approx(1e2)


def test_scores_top5_is_none_under_five_classes_and_recall_is_per_class():
    logits = torch.tensor([[2.0, 1, 0], [2.0, 1, 0], [2.0, 1, 0], [0.0, 2, 1]])
    labels = torch.tensor([0, 0, 0, 1])
    scores = classification_scores(logits, labels, 3)
    assert scores["top5"] is None
    assert scores["top1"] == 1.0 and scores["mean_per_class_recall"] == 1.0
    scores = classification_scores(logits, torch.tensor([0, 0, 0, 2]), 3)
    assert scores["top1"] == 0.75 and scores["mean_per_class_recall"] == 0.5  # class 2 is never right
