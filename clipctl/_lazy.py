"""Names a package exports but imports only on first use (PEP 562), so that importing the package stays cheap:
``import clipctl`` and ``clipctl --help`` do not pay for torch. Imports nothing but the standard library."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package``, whose ``exports`` map each module
    (absolute, or relative to ``package`` like ``".device"``) to the names taken from it. A name is cached in
    the package once loaded."""
    module = sys.modules[package]
    source = {name: module_name for module_name, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in source:
            value = getattr(importlib.import_module(source[name], package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(source))

    return sorted(source), __getattr__, __dir__
