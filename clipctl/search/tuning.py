"""How many IVF lists a query must visit: the fewest that reach the recall target on a sample.

The sample queries are indexed vectors themselves; their exact neighbours (themselves left out) come from the
exhaustive scan. Recall@10 is the share of the exact top 10 that the approximate search returns. ``nprobe`` is
doubled until the target is met, then the gap to the previous value is halved once more. Data without cluster
structure (random vectors) ends at every list visited: then the index saves memory, not time, and the
reported recall says so honestly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipctl.search.knn import exact_search, ivf_search
from clipctl.search.planner import IndexPlan

RECALL_K = 10
SAMPLE_QUERIES = 500


@dataclass(frozen=True)
class Tuning:
    nprobe: int
    recall: float  # recall@10 measured on the sample at that nprobe
    sample: int  # number of sample queries


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = RECALL_K) -> float:
    """Mean share of each query's exact top ``k`` (``truth`` rows, ``-1`` = none) that ``found`` returned."""
    shares = []
    for found_row, true_row in zip(found, truth, strict=True):
        wanted = set(true_row[:k][true_row[:k] >= 0].tolist())
        if wanted:
            shares.append(len(wanted & set(found_row[:k].tolist())) / len(wanted))
    return float(np.mean(shares)) if shares else 1.0


def _without_self(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for i, (found, row) in enumerate(zip(ids, rows, strict=True)):
        kept = found[(found != row) & (found >= 0)][:k]
        out[i, : len(kept)] = kept
    return out


def sample_rows(count: int, sample: int = SAMPLE_QUERIES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=min(sample, count), replace=False))


def tune_nprobe(
    index: object, vectors: np.ndarray, plan: IndexPlan, target: float, rows: np.ndarray | None = None
) -> Tuning:
    count = len(vectors)
    rows = sample_rows(count) if rows is None else rows
    k = min(RECALL_K, count - 1)
    if k < 1:
        return Tuning(1, 1.0, 0)
    queries = np.asarray(vectors[rows], dtype=np.float32)
    truth = _without_self(exact_search(vectors, queries, k + 1)[1], rows, k)

    def measure(nprobe: int) -> float:
        found = ivf_search(index, vectors, queries, k + 1, nprobe, plan.candidates(k + 1, count))[1]
        return recall_at_k(_without_self(found, rows, k), truth, k)

    low, nprobe = 0, 1
    while True:
        recall = measure(nprobe)
        if recall >= target or nprobe >= plan.nlist:
            break
        low, nprobe = nprobe, min(2 * nprobe, plan.nlist)
    middle = (low + nprobe) // 2
    if low and low < middle < nprobe:
        middle_recall = measure(middle)
        if middle_recall >= target:
            nprobe, recall = middle, middle_recall
    return Tuning(nprobe, recall, len(rows))
