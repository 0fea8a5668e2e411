"""Write a model's weights for inference (``clipctl export``), optionally re-parameterised: UniRepLKNet's
BatchNorms and dilated branches merged into single large-kernel convolutions.

The output is a ``.safetensors`` / ``.pt`` file, or a folder in the Hugging Face Hub layout
(``open_clip_config.json`` + ``open_clip_model.safetensors``) that ``local-dir:FOLDER`` loads again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clipctl.fileio import check_output_target, write_json_atomic

DTYPES = ("fp32", "fp16", "bf16")
FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass
class ExportResult:
    path: Path
    tensors: int
    params: int
    reparameterized: bool


def export_model(
    model_name: str,
    out_path: str | os.PathLike,
    pretrained: str | None = None,
    reparameterize: bool = False,
    dtype: str = "fp32",
    weights_only: bool = True,
) -> ExportResult:
    """Build ``model_name`` with its weights, optionally re-parameterise it, and write its state dict."""
    import torch

    from clipctl.api import create_model
    from clipctl.checkpoint import save_checkpoint_atomic, save_safetensors_atomic
    from clipctl.config.resolver import resolve_model
    from clipctl.errors import ClipctlError
    from clipctl.models.unireplknet import reparameterize_model

    if dtype not in DTYPES:
        raise ClipctlError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    out_path = Path(out_path)
    as_file = out_path.suffix in FILE_SUFFIXES
    check_output_target(out_path, kind="file" if as_file else None)
    if not as_file and out_path.exists() and not out_path.is_dir():
        raise ClipctlError(
            f"--out {out_path} exists and is not a folder; give a folder or a file ending in "
            + ", ".join(FILE_SUFFIXES)
        )

    # Merge in float32 and cast afterwards, so the folded weights are not rounded twice.
    model = create_model(model_name, pretrained, precision="fp32", weights_only=weights_only).eval()
    if reparameterize:
        if not any(callable(getattr(m, "reparameterize", None)) for m in model.modules()):
            raise ClipctlError(f"--reparameterize: {model_name} has no re-parameterisable layers")
        reparameterize_model(model)
    target_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    state_dict = {
        k: (v.to(target_dtype) if v.is_floating_point() else v).detach().contiguous()
        for k, v in model.state_dict().items()
    }
    metadata = {
        "format": "pt",
        "clipctl_model": str(getattr(model, "clipctl_model_name", model_name)),
        "clipctl_pretrained": str(pretrained or ""),
        "reparameterized": str(bool(reparameterize)).lower(),
    }
    if as_file:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        if out_path.suffix == ".safetensors":
            save_safetensors_atomic(state_dict, out_path, metadata=metadata)
        else:
            save_checkpoint_atomic(state_dict, out_path)
        written = out_path
    else:
        out_path.mkdir(parents=True, exist_ok=True)
        written = out_path / "open_clip_model.safetensors"
        save_safetensors_atomic(state_dict, written, metadata=metadata)
        preprocess = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        if isinstance(preprocess.get("size"), tuple):
            preprocess["size"] = list(preprocess["size"])
        config = {"model_cfg": resolve_model(model_name, pretrained).model_cfg, "preprocess_cfg": preprocess}
        write_json_atomic(out_path / "open_clip_config.json", config)
    return ExportResult(
        path=written,
        tensors=len(state_dict),
        params=sum(p.numel() for p in model.parameters()),
        reparameterized=reparameterize,
    )
