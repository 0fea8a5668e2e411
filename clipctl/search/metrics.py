"""How good a text search is on a labelled image collection: precision@k of one text query per class.

With images in an ImageFolder layout (``CLASS/NAME.png``) the label of each row is its folder. For the
query of class c, precision@k is the share of the k best rows whose folder is c. The demo reports it for
every class next to zero-shot accuracy: the two read the same image-text similarities, zero-shot along each
image's row (which class fits this image best) and search down each class's column (which images fit
this class best).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from clipctl.search.searcher import Searcher


@dataclass
class ClassPrecision:
    classname: str
    query: str
    precision: float  # share of the k best rows that belong to the class
    relevant: int  # rows of the class in the index (precision@k can reach at most relevant / k)


def folder_labels(searcher: Searcher) -> list[str]:
    """Each row's class: the folder its image sits in (the key's parent)."""
    keys = searcher.index.rows.column(searcher.index.manifest["key_column"]).to_pylist()
    return [PurePosixPath(str(key)).parent.name for key in keys]


def class_precision_at_k(
    searcher: Searcher,
    folders: list[str],
    classnames: list[str],
    template: str = "a photo of a {c}.",
    k: int = 10,
) -> list[ClassPrecision]:
    """Precision@k of the query ``template.format(c=classname)`` for each class (``folders[i]`` is the folder
    of ``classnames[i]``, as in an ImageFolder's sorted class order)."""
    labels = np.array(folder_labels(searcher))
    queries = [template.format(c=name) for name in classnames]
    vectors = searcher.encoder.texts(queries)
    _, ids = searcher.index.search_ids(vectors, k)
    results = []
    for folder, name, query, found in zip(folders, classnames, queries, ids, strict=True):
        found = found[found >= 0]
        hits = int((labels[found] == folder).sum())
        results.append(ClassPrecision(name, query, hits / k, int((labels == folder).sum())))
    return results


def precision_bound(top1: float, chance: float) -> float:
    """What mean precision@k should at least reach given zero-shot top-1 accuracy: half way from chance to it.

    If confusions were spread evenly, the images classified as c would be of class c with probability about
    top-1, and a search for c ranks the best-matching of them first, so precision@k should be near top-1. Half
    of the margin over chance is left for what the row-wise argmax does not see: a class whose prompt scores
    every image a little higher or lower than the others' prompts do.
    """
    return chance + 0.5 * (top1 - chance)
