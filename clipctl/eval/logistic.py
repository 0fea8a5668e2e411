"""Multinomial logistic regression on fixed features, in torch, for linear probes.

Objective: ``mean cross-entropy + weight_decay / 2 * ||W||^2`` (the bias is not penalised), which is
scikit-learn's ``LogisticRegression`` with ``C = 1 / (weight_decay * n)``. It is minimised with full-batch
L-BFGS (strong Wolfe line search) from zero, as OpenAI's CLIP paper did with scikit-learn, rather than with
CLIP_benchmark's mini-batch AdamW:

- the problem is convex, so L-BFGS reaches *the* optimum: no learning rate, epoch count or batch order to
  tune, and the result depends on neither a seed nor the device (up to float rounding), so two runs agree;
- it converges in tens to a few hundred full passes, each one or two matrix products over the features, which
  is fast on a GPU and fine on a CPU for the feature counts of the usual probe datasets;
- the logits are computed in chunks, so memory is the features plus one chunk of logits, never ``n x classes``
  at once for large ``n``.

The weight decay is chosen as CLIP_benchmark chooses it: on a held-out split of the training features, over 97
log-spaced values from 1e-6 to 1e2 -- first 7 of them, then narrowing around the best (steps of 8, 4, 2, 1
grid points) -- and the model is then refit on all the training features with the chosen value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GRID_LOW, GRID_HIGH, GRID_POINTS, COARSE_POINTS = -6.0, 2.0, 97, 7
DEFAULT_MAX_ITER = 1000
CHUNK_ROWS = 65536
# scikit-learn's stopping rule (its default tol): the largest gradient entry of the same objective below 1e-4
TOLERANCE_GRAD = 1e-4


@dataclass
class LinearClassifier:
    weight: torch.Tensor  # [dim, classes]
    bias: torch.Tensor  # [classes]
    iterations: int = 0

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        device = self.weight.device
        parts = [
            (chunk.to(device, self.weight.dtype) @ self.weight + self.bias).cpu()
            for chunk in features.split(CHUNK_ROWS)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, self.weight.shape[1])


def _objective(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    weight_decay: float,
) -> float:
    """The loss, with its gradient accumulated chunk by chunk into ``weight.grad`` / ``bias.grad``."""
    count = len(features)
    total = 0.0
    for x, y in zip(features.split(CHUNK_ROWS), labels.split(CHUNK_ROWS), strict=True):
        loss = F.cross_entropy(x @ weight + bias, y, reduction="sum") / count
        loss.backward()
        total += float(loss.detach())
    penalty = 0.5 * weight_decay * (weight * weight).sum()
    penalty.backward()
    return total + float(penalty.detach())


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    *,
    device: str | torch.device = "cpu",
    max_iter: int = DEFAULT_MAX_ITER,
    init: LinearClassifier | None = None,
) -> LinearClassifier:
    """The minimiser of the objective above (deterministic for given inputs), started from zero weights or from
    ``init`` -- another weight decay's solution, which only saves iterations: the optimum is unique."""
    device = torch.device(device)
    x = features.to(device=device, dtype=torch.float32)
    y = labels.to(device=device, dtype=torch.long)
    # Centring changes nothing but the conditioning: with an unpenalised bias, W(x - m) + c is the same model
    # as Wx + (c - Wm), at the same loss and penalty. Image embeddings share a large common direction (mean
    # cosine 0.5-0.99), which otherwise stalls L-BFGS long before the optimum.
    mean = x.mean(dim=0)
    x = x - mean
    if init is None:
        weight = torch.zeros(x.shape[1], num_classes, device=device, requires_grad=True)
        bias = torch.zeros(num_classes, device=device, requires_grad=True)
    else:
        weight = init.weight.to(device).clone().requires_grad_(True)
        bias = (init.bias.to(device) + mean @ init.weight.to(device)).detach().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=TOLERANCE_GRAD,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        return torch.tensor(_objective(x, y, weight, bias, weight_decay))

    with torch.enable_grad():
        optimizer.step(closure)
    iterations = int(optimizer.state[optimizer.param_groups[0]["params"][0]].get("n_iter", 0))
    weight = weight.detach()
    return LinearClassifier(weight, bias.detach() - mean @ weight, iterations)


def weight_decay_grid() -> list[float]:
    return torch.logspace(GRID_LOW, GRID_HIGH, GRID_POINTS, dtype=torch.float64).tolist()


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).double().mean()) if len(labels) else 0.0


@dataclass
class WeightDecaySearch:
    best: float
    tried: dict[float, float]  # weight decay -> held-out top-1, in the order tried


def search_weight_decay(
    evaluate: Callable[[float], float], grid: list[float] | None = None
) -> WeightDecaySearch:
    """CLIP_benchmark's search: the best of 7 coarse grid points, then the best of (left, peak, right) with the
    step halving from 8 grid points to 1. Ties go to the larger weight decay (the simpler model)."""
    grid = grid or weight_decay_grid()
    scores: dict[int, float] = {}

    def best_of(indices: list[int]) -> int:
        for i in indices:
            if i not in scores:
                scores[i] = evaluate(grid[i])
        return max(indices, key=lambda i: (scores[i], i))

    step = (len(grid) - 1) // (COARSE_POINTS - 1)
    peak = best_of(list(range(0, len(grid), step)))
    span = step // 2
    while span > 0:
        peak = best_of([max(peak - span, 0), peak, min(peak + span, len(grid) - 1)])
        span //= 2
    return WeightDecaySearch(grid[peak], {grid[i]: score for i, score in scores.items()})


def classification_scores(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> dict[str, float | None]:
    """``top1``, ``top5`` (None with fewer than 5 classes) and ``mean_per_class_recall`` over present classes."""
    ranked = logits.topk(min(5, num_classes), dim=1).indices
    hits = ranked == labels[:, None]
    present = torch.bincount(labels, minlength=num_classes) > 0
    correct = torch.bincount(labels[hits[:, 0]], minlength=num_classes).double()
    totals = torch.bincount(labels, minlength=num_classes).double()
    return {
        "top1": float(hits[:, 0].double().mean()),
        "top5": float(hits.any(dim=1).double().mean()) if num_classes >= 5 else None,
        "mean_per_class_recall": float((correct[present] / totals[present]).mean()),
    }
