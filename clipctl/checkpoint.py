"""Reading, adapting and writing model weights.

Reads every layout OpenCLIP users have: ``.safetensors``; ``.pt``/``.bin``/``.pth`` holding a plain state dict, a
training checkpoint (``{"state_dict": ...}``) or DDP's ``module.`` prefix; and OpenAI's original TorchScript
archives. Pickles are opened with ``weights_only=True`` unless the caller opts out.

Loading is strict: a checkpoint that does not fit the model is refused with the first missing, unexpected and
mis-shaped keys named, never half-loaded. Tower families that convert foreign layouts into their own key names
are listed in ``clipctl/models/state_dict_adapters.py``; their converters are called here.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clipctl import fileio
from clipctl.errors import CheckpointError
from clipctl.models.state_dict_adapters import adapter_for
from clipctl.pickle_globals import code_needed

# Keys OpenAI's TorchScript models keep as attributes, not weights.
_OPENAI_JIT_ATTRIBUTES = ("input_resolution", "context_length", "vocab_size")
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")
_PREFIXES_TO_STRIP = ("module.", "_orig_mod.")


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for name in archive.namelist()
        )


def _unreadable_pickle(path: Path, err: Exception, weights_only: bool) -> CheckpointError:
    """Why ``torch.load`` refused ``path``, decided from the file (torch's wording changes between versions):
    it needs code to load (only a refusal under ``weights_only``), or it is corrupt / not a PyTorch file."""
    needed = code_needed(path) if weights_only else None
    if needed:
        shown = ", ".join(needed[:3]) + (f" and {len(needed) - 3} more" if len(needed) > 3 else "")
        return CheckpointError(
            f"{path} is a pickle that needs code to load ({shown}); refusing, because loading it could run "
            "that code. If you trust the file, pass --unsafe-load (caption, export, push-to-hub; "
            "`clipctl export --unsafe-load --out weights.safetensors` converts it for every other command) "
            "or weights_only=False in Python"
        )
    return CheckpointError(
        f"cannot read checkpoint {path}: corrupt or not a PyTorch file ({type(err).__name__})"
    )


def read_state_dict(
    path: str | os.PathLike, *, weights_only: bool = True, map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``{key: tensor}`` dict with wrappers and DDP prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict: Any = load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"cannot read {path}: not a valid safetensors file ({err})") from err
    elif _is_torchscript_archive(path):
        # TorchScript is not pickled Python: loading it runs no arbitrary code, so weights_only does not apply.
        try:
            scripted = torch.jit.load(str(path), map_location=map_location)
        except RuntimeError as err:
            raise CheckpointError(
                f"cannot read TorchScript archive {path}: {str(err).splitlines()[0]}"
            ) from err
        state_dict = {k: v for k, v in scripted.state_dict().items() if k not in _OPENAI_JIT_ATTRIBUTES}
    else:
        try:
            state_dict = torch.load(path, map_location=map_location, weights_only=weights_only)
        except Exception as err:  # noqa: BLE001 - torch raises many types for corrupt or unsafe files
            raise _unreadable_pickle(path, err, weights_only) from err
    return _unwrap(state_dict, path)


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for _ in range(2):  # {"state_dict": {"model": ...}} exists in the wild
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state_dict = dict(obj)
    for prefix in _PREFIXES_TO_STRIP:
        if all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


# --- adapting a state dict to a model ------------------------------------------------------------------------

_TEXT_KEYS_OF_CLIP = (
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
)


def _to_custom_text(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP keeps the text tower at the top level; CustomTextCLIP and CoCa keep it under ``text.``."""
    return {(f"text.{k}" if k.startswith(_TEXT_KEYS_OF_CLIP) else k): v for k, v in state_dict.items()}


def resize_grid_pos_embed(pos_embed: torch.Tensor, new_len: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resize a ViT's ``[prefix + g*g, C]`` position embedding to ``new_len`` tokens, keeping prefix tokens."""
    prefix, grid = pos_embed[:num_prefix_tokens], pos_embed[num_prefix_tokens:]
    old_g, new_g = int(math.isqrt(grid.shape[0])), int(math.isqrt(new_len - num_prefix_tokens))
    if old_g * old_g != grid.shape[0] or new_g * new_g != new_len - num_prefix_tokens:
        raise CheckpointError(
            f"cannot resize a position embedding of {pos_embed.shape[0]} tokens to {new_len}: not square grids"
        )
    grid = grid.reshape(1, old_g, old_g, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_g, new_g), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_g * new_g, -1).to(pos_embed.dtype)
    return torch.cat([prefix, grid]) if num_prefix_tokens else grid


def resize_text_pos_embed(pos_embed: torch.Tensor, new_len: int) -> torch.Tensor:
    resized = F.interpolate(pos_embed.T[None].float(), size=new_len, mode="linear", align_corners=False)
    return resized[0].T.to(pos_embed.dtype)


def adapt_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Convert a checkpoint's layout into ``model``'s: text-tower prefix, logit shapes, position-embedding sizes,
    and any tower-specific conversion (a tower module's own ``adapt_state_dict``)."""
    target = model.state_dict()
    state_dict = dict(state_dict)
    if "text.token_embedding.weight" in target and "token_embedding.weight" in state_dict:
        state_dict = _to_custom_text(state_dict)
    state_dict.pop("text.transformer.embeddings.position_ids", None)

    for module in _tower_modules(model):
        adapter = adapter_for(module)
        if adapter is not None:
            state_dict = adapter(state_dict, model)

    for key in ("logit_scale", "logit_bias"):
        if key in state_dict and key in target and state_dict[key].shape != target[key].shape:
            state_dict[key] = state_dict[key].reshape(target[key].shape)
    if "logit_bias" in target and "logit_bias" not in state_dict and "logit_scale" in state_dict:
        # A checkpoint trained without a bias behaves as bias 0, not as the -10 a fresh SigLIP model starts with.
        state_dict["logit_bias"] = torch.zeros_like(target["logit_bias"])

    for key in ("visual.positional_embedding",):
        if key in state_dict and key in target and state_dict[key].shape != target[key].shape:
            if state_dict[key].shape[-1] == target[key].shape[-1]:
                prefix = target[key].shape[0] - _grid_tokens(target[key].shape[0])
                state_dict[key] = resize_grid_pos_embed(state_dict[key], target[key].shape[0], prefix)
    for key in ("positional_embedding", "text.positional_embedding"):
        if key in state_dict and key in target and state_dict[key].shape != target[key].shape:
            if state_dict[key].shape[-1] == target[key].shape[-1]:
                state_dict[key] = resize_text_pos_embed(state_dict[key], target[key].shape[0])
    return state_dict


def _grid_tokens(n: int) -> int:
    """The square part of a token count: 50 -> 49, 197 -> 196, 256 (no class token) -> 256."""
    root = int(math.isqrt(n))
    return n if root * root == n else int(math.isqrt(n - 1)) ** 2


def _tower_modules(model: nn.Module) -> list[nn.Module]:
    visual = getattr(model, "visual", None)
    return [
        m for m in (visual, getattr(visual, "trunk", None), getattr(model, "text", None)) if m is not None
    ]


def describe_mismatch(state_dict: Mapping[str, torch.Tensor], model: nn.Module, limit: int = 4) -> str | None:
    """One line naming what does not fit, or ``None`` when the state dict fits the model exactly."""
    target = model.state_dict()
    missing = [k for k in target if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target]
    shapes = [
        f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(target[k].shape)}"
        for k in target
        if k in state_dict and state_dict[k].shape != target[k].shape
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f", ... {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:limit])}{more})")
    hint = _layout_hint(unexpected)
    return "; ".join(parts) + (f"; {hint}" if hint else "")


def _layout_hint(unexpected: list[str]) -> str:
    if any(k.startswith(("vision_model.", "text_model.")) for k in unexpected):
        return "this looks like a Hugging Face transformers CLIP checkpoint, not an OpenCLIP one"
    if any(k.startswith("text_decoder.") for k in unexpected):
        return "this looks like a CoCa checkpoint"
    return ""


def load_checkpoint(
    model: nn.Module,
    checkpoint_path: str | os.PathLike,
    strict: bool = True,
    weights_only: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[list[str], list[str]]:
    """Load a weights file into ``model``. Strict by default; returns ``(missing, unexpected)`` keys."""
    state_dict = adapt_state_dict(
        read_state_dict(checkpoint_path, weights_only=weights_only, map_location=device), model
    )
    problem = describe_mismatch(state_dict, model)
    if problem and strict:
        raise CheckpointError(f"{checkpoint_path} does not fit {type(model).__name__}: {problem}")
    if problem:
        target = model.state_dict()
        state_dict = {k: v for k, v in state_dict.items() if k in target and v.shape == target[k].shape}
        if not state_dict:
            raise CheckpointError(f"{checkpoint_path}: no key of the checkpoint fits the model ({problem})")
    result = model.load_state_dict(state_dict, strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)


# --- writing -------------------------------------------------------------------------------------------------


def save_checkpoint_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves a half file."""
    with fileio.atomic_open(path) as handle:
        torch.save(obj, handle)
    return Path(path)


def save_safetensors_atomic(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write tensors as safetensors atomically; shared storage (tied weights) is cloned apart first."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    return fileio.write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
