"""Concurrent queries share model calls: what queues up during one call goes into the next."""

from __future__ import annotations

import threading
import time

import pytest

from clipctl.search.batching import MicroBatcher


def test_concurrent_callers_are_batched_and_get_their_own_results():
    sizes = []

    def run(items):
        sizes.append(len(items))
        time.sleep(0.05)  # a model call: requests arriving meanwhile wait for the next one
        return [item * 10 for item in items]

    batcher = MicroBatcher(run)
    results = {}

    def call(i):
        results[i] = batcher.map([i, i + 100])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: [i * 10, (i + 100) * 10] for i in range(12)}
    assert sum(sizes) == 24 and max(sizes) > 2 and len(sizes) < 12


def test_a_failing_call_fails_its_callers_and_the_next_call_works():
    calls = []

    def run(items):
        calls.append(items)
        if "bad" in items:
            raise ValueError("model failed")
        return items

    batcher = MicroBatcher(run)
    with pytest.raises(ValueError, match="model failed"):
        batcher.map(["bad"])
    assert batcher.map(["good"]) == ["good"]
