"""User-facing failures.

Every failure a user can cause (unknown model, missing file, bad checkpoint, malformed data) is raised as a
:class:`ClipctlError`. The CLI prints its message as one line on stderr and exits with ``exit_code``; the Python
API lets it propagate so callers can catch it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ClipctlError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""

    exit_code = 2


class UnknownNameError(ClipctlError, KeyError):
    """An unknown model, pretrained tag, recipe or similar name."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = ""):
        self.kind, self.name = kind, name
        self.suggestions = closest_names(name, known)
        message = f"unknown {kind} {name!r}"
        if self.suggestions:
            message += "; closest known: " + ", ".join(self.suggestions)
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class CheckpointError(ClipctlError):
    """A checkpoint that cannot be read, or that does not fit the model it is loaded into."""


class RunFailure(ClipctlError):
    """A job that started but could not finish (NaN loss, too few downloads succeeded, ...)."""

    exit_code = 1


def closest_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    known = list(known)
    by_lower = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)
    return [by_lower[h] for h in hits]
