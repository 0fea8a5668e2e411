"""The rich progress bar every job shows on an interactive stderr (and nothing otherwise: log lines remain)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ProgressBar:
    """One bar at a time on stderr: ``start`` a task, ``advance`` or ``update`` it, ``stop``.

    Disabled (every call a no-op) unless ``enabled`` and stderr is a terminal. ``unit`` adds a rate column
    ("12.3 images/s"); ``stats`` adds a free text column that ``update`` fills (loss, lr).
    """

    def __init__(
        self, enabled: bool, *, unit: str | None = None, stats: bool = False, transient: bool = True
    ):
        self.enabled = enabled and sys.stderr.isatty()
        self._unit, self._stats, self._transient = unit, stats, transient
        self._bar: Any = None
        self._task: Any = None

    def start(self, description: str, total: int | None, completed: int = 0) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import Progress

        self.stop()
        self._bar = Progress(
            *self._columns(description, total), console=Console(stderr=True), transient=self._transient
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total, completed=completed, stats="")

    def _columns(self, description: str, total: int | None) -> list[Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[Any] = [TextColumn(description.replace("[", r"\[")), BarColumn(), MofNCompleteColumn()]
        if self._unit is not None:
            columns.append(_RateColumn(self._unit))
        if self._stats:
            columns.append(TextColumn("{task.fields[stats]}"))
        columns.append(TimeElapsedColumn())
        if total is not None:
            columns.append(TimeRemainingColumn())
        return columns

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def update(self, completed: int, stats: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, stats=stats)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _RateColumn(unit: str) -> Any:  # noqa: N802 - builds a rich column class lazily (rich imports on use)
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.1f} {unit}/s")

    return RateColumn()


@contextmanager
def progress_bar(
    enabled: bool, total: int | None, description: str, *, unit: str | None = None, transient: bool = True
) -> Iterator[Callable[[int], None]]:
    """A callback that advances a bar for the duration of the block."""
    bar = ProgressBar(enabled, unit=unit, transient=transient)
    bar.start(description, total)
    try:
        yield bar.advance
    finally:
        bar.stop()
