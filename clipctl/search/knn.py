"""Nearest neighbours by inner product (cosine on the unit vectors an index stores): the exact scan, and the
approximate path (IVF candidates re-ranked exactly against the stored vectors)."""

from __future__ import annotations

import numpy as np

EMPTY = np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.int64)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Unit rows in float32; an all-zero row stays zero (it matches nothing rather than everything)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows of ``vectors`` for each query, best first: ``(scores, ids)``, each (queries, k)."""
    import faiss

    k = min(k, len(vectors))
    if k == 0 or len(queries) == 0:
        return EMPTY
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    return faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)


def rerank(
    vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores for each query's candidate rows (``-1`` = none); the ``k`` best, best first, padded with
    ``-1`` ids and ``-inf`` scores where a query has fewer candidates."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for i, (query, found) in enumerate(zip(queries, candidates, strict=True)):
        found = np.unique(found[found >= 0])  # sorted: the memory-mapped rows are read in file order
        if not len(found):
            continue
        exact = np.asarray(vectors[found], dtype=np.float32) @ query
        best = np.argsort(-exact, kind="stable")[:k]
        scores[i, : len(best)] = exact[best]
        ids[i, : len(best)] = found[best]
    return scores, ids


def ivf_search(
    index: object, vectors: np.ndarray, queries: np.ndarray, k: int, nprobe: int, num_candidates: int
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates from the IVF index (``nprobe`` lists visited), re-ranked exactly. Thread-safe: the search
    parameters travel with the call instead of being set on the shared index."""
    import faiss

    if len(queries) == 0:
        return EMPTY
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    params = faiss.SearchParametersIVF(nprobe=int(nprobe))
    _, candidates = index.search(queries, int(num_candidates), params=params)
    return rerank(vectors, queries, candidates, k)


def trim(scores: np.ndarray, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, the results that exist (drops the ``-1`` padding)."""
    return [(s[i >= 0], i[i >= 0]) for s, i in zip(scores, ids, strict=True)]
