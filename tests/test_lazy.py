"""Packages that export names lazily (clipctl, clipctl.runtime, clipctl.embed): importing them stays cheap,
and every exported name still resolves to the object its module defines."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_the_lazy_packages_does_not_import_torch():
    code = (
        "import sys, clipctl, clipctl.runtime, clipctl.embed; "
        "dir(clipctl); dir(clipctl.runtime); dir(clipctl.embed); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("package", ["clipctl", "clipctl.runtime", "clipctl.embed"])
def test_every_exported_name_resolves_to_its_module_and_is_listed(package):
    import importlib

    module = importlib.import_module(package)
    exported = []
    for source, names in module._EXPORTS.items():
        defining = importlib.import_module(source, package)
        for name in names:
            assert getattr(module, name) is getattr(defining, name)
            assert name in dir(module)
            exported.append(name)
    assert module.__all__ == sorted(exported)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018
