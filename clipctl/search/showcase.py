"""The search step of `clipctl demo`: index the held-out embeddings, run one example query, and measure
precision@k of one text query per class against the bound zero-shot accuracy sets (see ``metrics.py``)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from clipctl.search.build import IndexOptions, build_index
from clipctl.search.metrics import class_precision_at_k, folder_labels, precision_bound
from clipctl.search.searcher import Searcher

EXAMPLE_QUERY = "a red circle"
PRECISION_K = 10


@dataclass
class SearchShowcase:
    index_dir: str
    query: str
    top: list[dict[str, Any]]  # rank, score, key of the example query's best rows
    k: int  # precision@k: 10, or fewer when a class has fewer held-out images
    precision: float  # mean over the classes
    bound: float  # what the mean should at least reach given zero-shot top-1
    per_class: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def index_and_search(
    parquet: str | os.PathLike,
    index_dir: str | os.PathLike,
    folders: list[str],
    classnames: list[str],
    top1: float,
    query: str = EXAMPLE_QUERY,
) -> SearchShowcase:
    """``folders[i]`` holds the held-out images of ``classnames[i]``; ``top1`` is the zero-shot accuracy."""
    build_index(parquet, index_dir, IndexOptions(overwrite=True))
    searcher = Searcher(index_dir)
    top = [
        {"rank": h.rank, "score": round(h.score, 4), "key": h.key} for h in searcher.search(text=query, k=5)
    ]
    labels = folder_labels(searcher)
    k = max(1, min(PRECISION_K, *(labels.count(f) for f in folders)))
    per_class = class_precision_at_k(searcher, folders, classnames, k=k)
    mean = sum(c.precision for c in per_class) / len(per_class)
    return SearchShowcase(
        index_dir=str(index_dir),
        query=query,
        top=top,
        k=k,
        precision=mean,
        bound=precision_bound(top1, 1 / len(classnames)),
        per_class={c.classname: c.precision for c in per_class},
    )
