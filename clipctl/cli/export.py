"""`clipctl export`: write a model's weights for inference, optionally re-parameterised (UniRepLKNet's BatchNorms
and dilated branches merged into single large-kernel convolutions).

The output is a ``.safetensors`` / ``.pt`` file, or a folder in the Hugging Face Hub layout
(``open_clip_config.json`` + ``open_clip_model.safetensors``) that ``--model local-dir:FOLDER`` loads again.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from clipctl.cli.console import out

DTYPES = ("fp32", "fp16", "bf16")
FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass
class ExportResult:
    path: Path
    tensors: int
    params: int
    reparameterized: bool


def _write_json_atomic(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=2)
            handle.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; the config is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        _write_json_atomic(config, out_path / "open_clip_config.json")
    return ExportResult(
        path=written,
        tensors=len(state_dict),
        params=sum(p.numel() for p in model.parameters()),
        reparameterized=reparameterize,
    )


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        model: str = typer.Option(
            ..., "--model", help="Registry name, hf-hub:ORG/REPO, local-dir:PATH or a .json config."
        ),
        out_path: Path = typer.Option(
            ...,
            "--out",
            "-o",
            help="A .safetensors / .pt / .pth / .bin file, or a folder (written in the Hub layout: "
            "open_clip_config.json + open_clip_model.safetensors).",
        ),
        pretrained: str = typer.Option(None, "--pretrained", help="Pretrained tag or weights file."),
        reparameterize: bool = typer.Option(
            False,
            "--reparameterize",
            help="Merge BatchNorms and parallel branches into single convolutions for inference "
            "(UniRepLKNet); outputs are unchanged, inference is faster.",
        ),
        dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16 (cast after merging)."),
        unsafe_load: bool = typer.Option(
            False,
            "--unsafe-load",
            help="Allow pickled checkpoints that need code to load (trusted files only).",
        ),
    ) -> None:
        """Write a model's weights for inference, optionally re-parameterised."""
        result = export_model(
            model,
            out_path,
            pretrained=pretrained,
            reparameterize=reparameterize,
            dtype=dtype,
            weights_only=not unsafe_load,
        )
        form = "re-parameterised" if result.reparameterized else "as trained"
        out.print(
            f"wrote {result.path} ({result.tensors} tensors, {result.params / 1e6:.2f}M parameters, {form}, {dtype})"
        )
