"""Reading the checkpoints a soup or a WiSE-FT mix is made of, and checking that they share one architecture.

An ingredient is named the way users name weights anywhere else in clipctl:

- a weights file: ``.safetensors``, ``.pt``/``.bin``/``.pth`` (a plain state dict, a training checkpoint
  ``{"state_dict": ...}``, DDP's ``module.`` prefix) or an OpenAI TorchScript archive -- whatever
  :func:`clipctl.checkpoint.read_state_dict` reads;
- a folder in the Hub layout (``open_clip_config.json`` + weights), as ``local-dir:PATH`` or the bare path;
- ``hf-hub:ORG/REPO`` (from the local Hugging Face cache or the Hub).

Each form is one entry of :data:`READERS` (a predicate and a reader), so another form -- a sharded
``torch.distributed.checkpoint`` folder once clipctl trains with FSDP -- is one more entry, with nothing else
to change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipctl.errors import CheckpointError, ClipctlError


@dataclass
class Ingredient:
    """One checkpoint: how the user named it, its flat state dict, and the Hub model name when it has one."""

    spec: str
    state_dict: dict[str, torch.Tensor]
    hub_name: str | None = None  # "local-dir:..." / "hf-hub:...": the architecture comes with the weights


def hub_name(spec: str) -> str | None:
    """``local-dir:``/``hf-hub:`` name of a Hub-layout ingredient (a bare folder path gets the prefix), else None."""
    from clipctl.config.resolver import HF_HUB_PREFIX, HUB_CONFIG_NAME, LOCAL_DIR_PREFIX

    if spec.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        return spec
    path = Path(spec).expanduser()
    if path.is_dir() and (path / HUB_CONFIG_NAME).is_file():
        return f"{LOCAL_DIR_PREFIX}{path}"
    return None


def _read_hub(spec: str, weights_only: bool) -> Ingredient:
    from clipctl.api import weights_path
    from clipctl.checkpoint import read_state_dict
    from clipctl.config.resolver import resolve_model

    name = hub_name(spec) or spec
    resolved = resolve_model(name)
    path = weights_path(resolved, None)
    if path is None:
        raise ClipctlError(f"{spec} holds no weights file")
    return Ingredient(spec, read_state_dict(path, weights_only=weights_only), hub_name=name)


def _read_file(spec: str, weights_only: bool) -> Ingredient:
    from clipctl.checkpoint import read_state_dict

    return Ingredient(spec, read_state_dict(Path(spec).expanduser(), weights_only=weights_only))


def _is_sharded_folder(spec: str) -> bool:
    # torch.distributed.checkpoint writes a ".metadata" file beside the shards.
    return (Path(spec).expanduser() / ".metadata").is_file()


def _refuse_sharded(spec: str, weights_only: bool) -> Ingredient:
    raise ClipctlError(
        f"{spec} is a sharded (torch.distributed.checkpoint) folder; clipctl cannot read those yet: "
        "consolidate it into one file first (torch.distributed.checkpoint.format_utils.dcp_to_torch_save)"
    )


Reader = Callable[[str, bool], Ingredient]
READERS: list[tuple[Callable[[str], bool], Reader]] = [
    (lambda spec: hub_name(spec) is not None, _read_hub),
    (_is_sharded_folder, _refuse_sharded),
    (lambda spec: Path(spec).expanduser().is_file(), _read_file),
]


def read_ingredient(spec: str | os.PathLike, *, weights_only: bool = True) -> Ingredient:
    """Read one ingredient (see the module docstring for the forms); a missing one is a one-line error."""
    text = str(spec)
    for matches, reader in READERS:
        if matches(text):
            return reader(text, weights_only)
    path = Path(text).expanduser()
    if path.is_dir():
        raise ClipctlError(
            f"{text} is a folder without open_clip_config.json: not a model folder (give a weights file, "
            "local-dir:PATH or hf-hub:ORG/REPO)"
        )
    raise ClipctlError(f"checkpoint {text} does not exist")


def check_ingredient_specs(specs: list[str]) -> None:
    """Fail before any weights are read: nothing to mix, or a named checkpoint that is not there."""
    from clipctl.config.resolver import HF_HUB_PREFIX, LOCAL_DIR_PREFIX

    if not specs:
        raise ClipctlError("no checkpoints given")
    for spec in specs:
        if spec.startswith(HF_HUB_PREFIX):
            continue  # found (or not) in the Hugging Face cache when read
        path = Path(spec.removeprefix(LOCAL_DIR_PREFIX)).expanduser()
        if not path.exists():
            raise ClipctlError(f"checkpoint {spec} does not exist")


def _describe_tensor(tensor: torch.Tensor) -> str:
    return f"{list(tensor.shape)} {str(tensor.dtype).replace('torch.', '')}"


def first_difference(reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> str | None:
    """The first key (in ``reference``'s order, then ``other``'s) that is missing, extra, of another shape, or
    floating in one and integer in the other; ``None`` when both state dicts have one architecture."""
    for key, tensor in reference.items():
        if key not in other:
            return f"{key!r} is missing"
        theirs = other[key]
        if theirs.shape != tensor.shape or theirs.is_floating_point() != tensor.is_floating_point():
            return f"{key!r} is {_describe_tensor(theirs)}, not {_describe_tensor(tensor)}"
    for key in other:
        if key not in reference:
            return f"{key!r} is not in the first checkpoint"
    return None


def check_same_architecture(first: Ingredient, other: Ingredient) -> None:
    """Refuse ``other`` when it does not have ``first``'s keys and shapes, naming the first differing key."""
    difference = first_difference(first.state_dict, other.state_dict)
    if difference is not None:
        raise CheckpointError(
            f"{other.spec} does not have the architecture of {first.spec}: first differing key {difference}"
        )


def adapt_to_model(ingredient: Ingredient, model: Any) -> Ingredient:
    """The ingredient in ``model``'s key layout (text-tower prefix, OpenAI archives, ...), refused with the
    mismatched keys named when it is another architecture."""
    from clipctl.checkpoint import adapt_state_dict, describe_mismatch

    state_dict = adapt_state_dict(ingredient.state_dict, model)
    problem = describe_mismatch(state_dict, model)
    if problem:
        raise CheckpointError(f"{ingredient.spec} does not fit {type(model).__name__}: {problem}")
    return Ingredient(ingredient.spec, state_dict, ingredient.hub_name)
