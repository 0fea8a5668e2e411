"""Training recipes: YAML files holding a published run's settings (its model card's command, as data).

A recipe file looks like::

    description: one paragraph on what the run was
    source: where the settings come from (model card, paper, README)
    args:              # run-config keys (OpenCLIP option names in snake_case) and values
      model: convnext_base_w
      batch_size: 512

Search order for a name: ``$CLIPCTL_RECIPES_DIR`` (``os.pathsep``-separated folders), then the recipes that
ship with clipctl. Those live in ``recipes/`` at the repository root; an installed wheel carries them as
``clipctl/recipes/`` (copied there by ``setup.py``), a source checkout or editable install reads the root folder.
A path to a ``.yaml`` file works anywhere a name does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import clipctl
from clipctl.errors import ClipctlError, UnknownNameError

RECIPE_SUFFIXES = (".yaml", ".yml")
RECIPE_KEYS = ("description", "source", "args")


@dataclass
class Recipe:
    name: str
    path: Path
    description: str = ""
    source: str = ""
    args: dict[str, Any] = field(default_factory=dict)


def builtin_recipe_dir() -> Path:
    """The shipped recipes: inside the installed package, else ``recipes/`` of the source checkout."""
    package = Path(clipctl.__file__).resolve().parent
    installed = package / "recipes"
    if installed.is_dir():
        return installed
    # Only a checkout (pyproject.toml beside the package) counts: in site-packages, the folder above clipctl
    # may hold another distribution's top-level "recipes".
    if (package.parent / "pyproject.toml").is_file():
        return package.parent / "recipes"
    return installed


def recipe_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("CLIPCTL_RECIPES_DIR", "").split(os.pathsep) if p]
    dirs.append(builtin_recipe_dir())
    return dirs


def _recipe_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in recipe_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix in RECIPE_SUFFIXES and path.stem not in found:
                found[path.stem] = path
    return found


def list_recipes() -> list[str]:
    return sorted(_recipe_files())


def find_recipe(name_or_path: str) -> Path:
    looks_like_path = name_or_path.endswith(RECIPE_SUFFIXES) or os.sep in name_or_path
    if looks_like_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ClipctlError(f"recipe file {path} does not exist")
        return path
    files = _recipe_files()
    if name_or_path not in files:
        raise UnknownNameError("recipe", name_or_path, files, hint="see `clipctl recipes list`")
    return files[name_or_path]


def load_recipe(name_or_path: str) -> Recipe:
    """Read and check a recipe; its ``args`` keys must be run-config keys (values are coerced later)."""
    from clipctl.config.run import FIELDS

    path = find_recipe(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ClipctlError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict):
        raise ClipctlError(f"recipe {path} must be a mapping with description, source and args")
    extra = sorted(set(data) - set(RECIPE_KEYS))
    if extra:
        raise ClipctlError(
            f"recipe {path}: unknown top-level key {extra[0]!r} (expected {', '.join(RECIPE_KEYS)})"
        )
    args = data.get("args") or {}
    if not isinstance(args, dict):
        raise ClipctlError(f"recipe {path}: 'args' must be a mapping of run-config keys to values")
    normalized = {str(k).replace("-", "_"): v for k, v in args.items()}
    for key in normalized:
        if key not in FIELDS:
            raise UnknownNameError("recipe key", key, FIELDS, hint=f"in {path}")
    return Recipe(
        name=path.stem,
        path=path,
        description=str(data.get("description") or "").strip(),
        source=str(data.get("source") or "").strip(),
        args=normalized,
    )
