"""Names a package exports but imports only on first use (PEP 562), so that importing the package stays cheap:
``import clipctl`` and ``clipctl --help`` do not pay for torch. Imports nothing but the standard library."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``exports`` map each name to the module that
    defines it (absolute, or relative to ``package`` like ``".device"``). A name is cached in the package once
    loaded."""
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
