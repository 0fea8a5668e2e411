"""Shared rich consoles: results go to stdout, progress and diagnostics to stderr."""

from __future__ import annotations

from rich.console import Console

out = Console()
err = Console(stderr=True)
