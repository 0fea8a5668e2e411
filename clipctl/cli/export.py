"""`clipctl export`: a model's weights for inference, optionally re-parameterised (see ``clipctl.hub.deploy``)."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli.console import out


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
        from clipctl.hub.deploy import export_model

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
