"""`clipctl index`, `clipctl search`, `clipctl serve`: nearest-neighbour search over the embeddings
`clipctl embed` writes, exact for small collections and approximate (faiss IVF, re-ranked exactly) beyond."""

from clipctl.search.build import IndexOptions, IndexSummary, append_index, build_index
from clipctl.search.index import Hit, SearchIndex
from clipctl.search.searcher import Searcher, search

__all__ = [
    "Hit",
    "IndexOptions",
    "IndexSummary",
    "SearchIndex",
    "Searcher",
    "append_index",
    "build_index",
    "search",
]
