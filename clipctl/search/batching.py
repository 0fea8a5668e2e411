"""Micro-batching for a model shared by concurrent requests: each request's items wait in a queue, and one
thread runs the model on whatever has queued up while its previous call ran. A lone request goes through at
once (nothing waits to fill a batch); under load, twenty queued texts become one forward pass instead of
twenty, which on a CPU is most of the difference between the model and the index being the bottleneck."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class MicroBatcher:
    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int = 64):
        self.run = run
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[Any, Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def map(self, items: list[Any]) -> list[Any]:
        """``run`` applied to each item (in batches shared with other callers), in order."""
        self._ensure_thread()
        futures = []
        for item in items:
            future: Future = Future()
            self._queue.put((item, future))
            futures.append(future)
        return [future.result() for future in futures]

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="clipctl-query-batcher", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                results = self.run([item for item, _ in batch])
            except BaseException as err:  # noqa: BLE001 - handed to every waiting caller
                for _, future in batch:
                    future.set_exception(err)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
