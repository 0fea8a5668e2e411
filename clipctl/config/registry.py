"""Architecture registry: model configs are JSON files in OpenCLIP's schema, found on a list of search paths.

The built-in configs live in ``model_configs/``; ``add_model_config`` adds a file or folder (and
``CLIPCTL_MODEL_CONFIG_PATH``, ``os.pathsep``-separated, is read at start-up).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError

BUILTIN_CONFIG_DIR = Path(__file__).parent / "model_configs"
REQUIRED_KEYS = ("embed_dim", "vision_cfg", "text_cfg")

_search_paths: list[Path] = [BUILTIN_CONFIG_DIR]
_configs: dict[str, dict[str, Any]] = {}


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_model_config_file(path: str | Path) -> dict[str, Any]:
    """Read one architecture JSON, either a bare config or a Hub ``open_clip_config.json`` (``model_cfg`` key)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise ClipctlError(f"cannot read model config {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ClipctlError(f"model config {path} is not valid JSON: {err.msg} at line {err.lineno}") from err
    if isinstance(data, dict) and "model_cfg" in data:
        data = data["model_cfg"]
    if not isinstance(data, dict) or not all(k in data for k in REQUIRED_KEYS):
        raise ClipctlError(f"model config {path} lacks one of {', '.join(REQUIRED_KEYS)}")
    return data


def _rescan() -> None:
    found: dict[str, dict[str, Any]] = {}
    for base in _search_paths:
        files = [base] if base.is_file() else sorted(base.glob("*.json")) if base.is_dir() else []
        for file in files:
            try:
                found[file.stem] = read_model_config_file(file)
            except ClipctlError:
                continue  # a stray JSON file in a user folder is not an architecture
    _configs.clear()
    _configs.update({name: found[name] for name in sorted(found, key=_natural_key)})


def add_model_config(path: str | os.PathLike) -> None:
    """Add a config file or a folder of config files to the registry."""
    path = Path(path)
    if not path.exists():
        raise ClipctlError(f"model config path {path} does not exist")
    _search_paths.append(path)
    _rescan()


def list_models() -> list[str]:
    """Names of all registered architectures, naturally sorted."""
    return list(_configs)


def normalize_model_name(name: str) -> str:
    # OpenAI spells architectures 'ViT-B/32'; the registry uses file-safe 'ViT-B-32'.
    return name.replace("/", "-")


def get_model_config(name: str) -> dict[str, Any] | None:
    """A deep copy of the named architecture's config, or ``None`` if the name is not registered."""
    cfg = _configs.get(normalize_model_name(name))
    return copy.deepcopy(cfg) if cfg is not None else None


for _extra in filter(None, os.environ.get("CLIPCTL_MODEL_CONFIG_PATH", "").split(os.pathsep)):
    if Path(_extra).exists():
        _search_paths.append(Path(_extra))
_rescan()
