"""Which faiss index to build for ``n`` vectors of dimension ``d`` within a memory budget.

- Below ``exact_below`` rows (and when the float32 vectors fit the budget): no faiss index at all. Search is
  an exhaustive inner-product scan of the memory-mapped vectors, exact by construction.
- Otherwise an inverted-file index (IVF) over compressed codes: 8-bit scalar quantisation (``SQ8``, d bytes a
  vector) when it fits, else 4-bit (``SQ4``), else product quantisation with 4-bit fast-scan codes (``PQmx4fs``,
  m/2 bytes). The codes only propose candidates; the candidates are re-ranked exactly against the
  memory-mapped float32 vectors, so the compression costs recall only where a true neighbour is not among
  the candidates. ``nprobe`` (how many lists a query visits) is then tuned on a sample until the recall
  target is met (see ``tuning.py``).

HNSW was measured and left out: on 200,000 random 512-dimensional vectors a HNSW32,SQ8 graph took 7.4 minutes
to build on 2 (shared) cores and reached 0.37 recall@10 at efSearch 512 even after re-ranking, while
IVF-SQ8 built in seconds and, visiting every list, reached 1.0 after re-ranking 50 candidates.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from clipctl.errors import ClipctlError

DEFAULT_EXACT_BELOW = 100_000
DEFAULT_MAX_INDEX_MEMORY = 4 << 30
MIN_TRAIN_PER_LIST = 39  # faiss warns below this many training points per centroid
ID_BYTES = 8  # each IVF entry stores an int64 row id beside its code

# (codec, bytes a vector takes, candidates per requested result, minimum candidates) from most to least exact.
# The candidate counts were chosen on 200k random 512-d vectors (the hardest case: no cluster structure): SQ8
# re-ranked from 50 candidates gave recall@10 1.0, SQ4 from 100 gave 1.0.
_SQ_CODECS = (("SQ8", 1.0, 5, 50), ("SQ4", 0.5, 10, 100))
_PQ_CANDIDATES = (20, 200)


@dataclass(frozen=True)
class IndexPlan:
    kind: str  # "exact" | "approximate"
    factory: str | None  # faiss index_factory string, e.g. "IVF1024,SQ8"
    nlist: int
    codec: str | None
    candidates_per_result: int
    min_candidates: int
    memory_bytes: int  # what the index holds in memory at query time (vectors or codes, ids, centroids)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def candidates(self, k: int, count: int) -> int:
        return min(count, max(k * self.candidates_per_result, self.min_candidates, k))


def parse_memory(text: str | int) -> int:
    """``"4G"``, ``"512MB"``, ``"1.5GiB"``, ``"200000000"`` -> bytes (binary units: 1G = 2**30)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not match:
        raise ClipctlError(f"cannot read memory size {text!r}; e.g. 512M, 4G, 1.5GiB")
    value = float(match.group(1)) * (1 << (10 * " kmgt".index(match.group(2) or " ")))
    if value < 1:
        raise ClipctlError(f"memory size {text!r} is too small")
    return int(value)


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def choose_nlist(n: int) -> int:
    """About 2 sqrt(n) lists (a power of two), with enough training points for each."""
    target = 2 * math.sqrt(max(n, 1))
    nlist = 1 << max(0, round(math.log2(target)))
    while nlist > 1 and nlist * MIN_TRAIN_PER_LIST > n:
        nlist //= 2
    return max(1, min(nlist, 65_536))


def _pq_sizes(d: int) -> list[int]:
    return [m for m in (d // 2, d // 4, d // 8, d // 16) if m >= 4 and d % m == 0 and m % 2 == 0]


def plan_index(n: int, d: int, max_memory: int, exact_below: int = DEFAULT_EXACT_BELOW) -> IndexPlan:
    exact_bytes = n * d * 4
    if n < exact_below and exact_bytes <= max_memory:
        reason = f"{n:,} vectors (< --exact-below {exact_below:,}): exact search over all of them"
        return IndexPlan("exact", None, 0, None, 1, 0, exact_bytes, reason)
    nlist = choose_nlist(n)
    fixed = nlist * d * 4  # the coarse centroids
    options = [(codec, int(d * size), per, floor) for codec, size, per, floor in _SQ_CODECS]
    options += [(f"PQ{m}x4fs", m // 2, *_PQ_CANDIDATES) for m in _pq_sizes(d)]
    for codec, code_bytes, per, floor in options:
        memory = fixed + n * (code_bytes + ID_BYTES)
        if memory <= max_memory:
            why = "above --exact-below" if n >= exact_below else "too big for --max-index-memory as float32"
            reason = (
                f"{n:,} vectors ({why}): {nlist} IVF lists over {codec} codes ({code_bytes} bytes a vector), "
                "candidates re-ranked exactly"
            )
            return IndexPlan("approximate", f"IVF{nlist},{codec}", nlist, codec, per, floor, memory, reason)
    smallest = fixed + n * (options[-1][1] + ID_BYTES)
    raise ClipctlError(
        f"{n:,} vectors of dimension {d} need at least {format_bytes(smallest)} for the most compact index "
        f"({options[-1][0]}); raise --max-index-memory (now {format_bytes(max_memory)})"
    )
