"""The search commands' optional dependencies (the ``search`` extra): a missing one is a one-line error that
says what to install, raised before any work starts (the demo checks before it trains)."""

from __future__ import annotations

import importlib.util

from clipctl.errors import ClipctlError

INDEX_MODULES = ("faiss",)
SERVE_MODULES = ("faiss", "starlette", "uvicorn", "multipart")


def require(modules: tuple[str, ...] = INDEX_MODULES, what: str = "search") -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ClipctlError(
            f"{what} needs {', '.join(missing)} (the search extra): pip install 'clipctl[search]'"
        )
