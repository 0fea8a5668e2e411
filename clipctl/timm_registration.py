"""Make ``import clipctl; timm.create_model("unireplknet_l")`` work without making ``import clipctl`` slow.

clipctl's timm models (UniRepLKNet) register themselves when ``clipctl.models.unireplknet`` is imported, which
imports torch and timm (about a second). ``import clipctl`` must stay cheap (``clipctl --help``, completion),
so it only calls :func:`install`: when timm is already imported the models register at once; otherwise a
post-import hook registers them right after ``timm`` itself finishes importing. The hook touches no other
import and removes itself once it has fired.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

TIMM = "timm"
REGISTERING_MODULES = ("clipctl.models.unireplknet",)


def register_timm_models() -> None:
    try:
        for name in REGISTERING_MODULES:
            importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - never break the user's `import timm` over our models
        warnings.warn(f"clipctl could not register its timm models: {err}", RuntimeWarning, stacklevel=2)


# Plain classes (the import protocol is duck-typed): importlib.abc alone would add ~10 ms to `import clipctl`.
class _RegisterAfterExec:
    """Wraps timm's loader: executes the module, then registers clipctl's models."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register_timm_models()

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: the real loader's
        return getattr(self._loader, name)


class _TimmImportHook:
    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None):
        if fullname != TIMM:
            return None
        _uninstall()  # fire once; also keeps the lookup below from finding this hook again
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        for finder in sys.meta_path:
            if spec is not None:
                break
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisterAfterExec(spec.loader)
        return spec


_HOOK = _TimmImportHook()


def _uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def install() -> None:
    """Register now if timm is loaded, else as soon as it is."""
    if TIMM in sys.modules:
        register_timm_models()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
