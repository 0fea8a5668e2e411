"""Which index `clipctl index` builds for a number of vectors and a memory budget."""

from __future__ import annotations

import pytest

from clipctl.errors import ClipctlError
from clipctl.search.planner import choose_nlist, parse_memory, plan_index


def test_memory_sizes():
    assert parse_memory("4G") == 4 << 30
    assert parse_memory("512MB") == 512 << 20
    assert parse_memory("1.5GiB") == int(1.5 * (1 << 30))
    assert parse_memory("123") == 123
    for bad in ("lots", "-1G", "4X", ""):
        with pytest.raises(ClipctlError, match="cannot read memory size"):
            parse_memory(bad)


def test_exact_below_the_threshold_when_it_fits():
    assert plan_index(99_999, 512, 4 << 30).kind == "exact"
    assert plan_index(100_000, 512, 4 << 30).kind == "approximate"
    squeezed = plan_index(50_000, 512, 50 << 20)  # 100 MB of float32 vectors: too big for 50 MB
    assert squeezed.kind == "approximate" and "too big for --max-index-memory" in squeezed.reason


def test_codes_shrink_with_the_budget():
    n, d = 1_000_000, 512
    assert plan_index(n, d, 4 << 30).codec == "SQ8"  # 520 MB of codes and ids
    assert plan_index(n, d, 400 << 20).codec == "SQ4"  # 264 MB
    pq = plan_index(n, d, 150 << 20)
    assert pq.codec.startswith("PQ") and pq.codec.endswith("x4fs") and pq.memory_bytes <= 150 << 20
    assert pq.candidates(10, n) > plan_index(n, d, 4 << 30).candidates(
        10, n
    )  # coarser codes, more re-ranking
    with pytest.raises(ClipctlError, match=r"need at least .* raise --max-index-memory"):
        plan_index(n, d, 10 << 20)


def test_list_count_grows_with_the_square_root_and_keeps_enough_training_points():
    assert choose_nlist(200_000) == 1024
    assert choose_nlist(1_000_000) == 2048
    assert choose_nlist(2_000) <= 2_000 // 39
    assert choose_nlist(10) == 1
