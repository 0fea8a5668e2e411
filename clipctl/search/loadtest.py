"""A bounded load test for a running `clipctl serve`: ``clients`` threads, each on its own keep-alive
connection, share a fixed number of text queries; latency percentiles and throughput come back, with every
failed request listed. Used by the test suite and ``bench/search.py``; also runnable on its own::

    python -m clipctl.search.loadtest http://127.0.0.1:8000 --clients 20 --queries 400
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

QUERIES = (
    "a red circle",
    "a blue square",
    "a green triangle",
    "a yellow star",
    "a photo of a purple hexagon",
)


@dataclass
class LoadReport:
    clients: int
    completed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    qps: float
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.completed} queries from {self.clients} clients in {self.seconds:.2f} s: "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, {self.qps:.1f} queries/s, {len(self.errors)} errors"
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _client(url: str, jobs: list[int], lock: threading.Lock, k: int, latencies: list, errors: list) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    while True:
        with lock:
            if not jobs:
                break
            job = jobs.pop()
        target = "/api/search?" + urlencode({"text": QUERIES[job % len(QUERIES)], "k": k})
        started = time.perf_counter()
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200 or not json.loads(body).get("results"):
                errors.append(f"{target}: HTTP {response.status} {body[:200]!r}")
            else:
                latencies.append(elapsed)
        except (OSError, http.client.HTTPException, ValueError) as err:
            errors.append(f"{target}: {type(err).__name__}: {err}")
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.close()


def run_load(url: str, *, clients: int = 20, queries: int = 400, k: int = 10) -> LoadReport:
    jobs = list(range(queries))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_client, args=(url, jobs, lock, k, latencies, errors)) for _ in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return LoadReport(
        clients=clients,
        completed=len(latencies),
        seconds=seconds,
        p50_ms=1000 * _percentile(latencies, 0.5),
        p99_ms=1000 * _percentile(latencies, 0.99),
        qps=len(latencies) / seconds if seconds > 0 else 0.0,
        errors=errors,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    print(run_load(args.url, clients=args.clients, queries=args.queries, k=args.k))


if __name__ == "__main__":
    main()
