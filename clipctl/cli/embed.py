"""`clipctl embed`: embed an image folder, a list file, shards or a caption file into Parquet (or clip-retrieval's
layout)."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli import options
from clipctl.cli.console import err, out
from clipctl.embed.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed(
        src: str = typer.Argument(
            None,
            help="Image folder (searched recursively), list file (one image path per line, relative to the file), "
            "or webdataset shards ('shards/{00000..00009}.tar', a .tar, or a folder of .tar files).",
            show_default=False,
        ),
        out_path: Path = typer.Option(
            ..., "--out", "-o", help="Output .parquet file (or folder for --format clip-retrieval)."
        ),
        model: str = typer.Option(
            None, "--model", help=f"Model name or config JSON  \\[default: {DEFAULT_MODEL}]"
        ),
        pretrained: str = typer.Option(
            None,
            "--pretrained",
            help=f"Pretrained tag or weights file; 'none' for random weights  \\[default: {DEFAULT_PRETRAINED} "
            "with the default model, else none]",
        ),
        batch_size: int = typer.Option(32, "--batch-size", "-b", help="Images (or captions) per batch."),
        workers: int = typer.Option(
            None,
            "--workers",
            "-j",
            help="Loader processes (on a CPU each also runs a model replica); 0 = all in this process  "
            "\\[default: number of cores, at most 8]",
            show_default=False,
        ),
        device: str = options.device(),
        precision: str = typer.Option(
            "fp32",
            "--precision",
            help="fp32 | bf16 | fp16 (bf16 casts the weights: faster only on CPUs with native bf16, "
            "AVX-512 BF16 or AMX; a warning says when this one has none).",
        ),
        no_normalize: bool = typer.Option(
            False, "--no-normalize", help="Store raw embeddings instead of L2-normalised."
        ),
        text: Path = typer.Option(
            None, "--text", help="Embed the captions of this text file (one per line) instead of images."
        ),
        fast_decode: bool = typer.Option(
            False,
            "--fast-decode",
            help="Decode JPEGs at reduced scale before resizing: faster, slightly different pixels.",
        ),
        fmt: str = typer.Option(
            "parquet", "--format", help="parquet | clip-retrieval (img_emb/*.npy + metadata/*.parquet)."
        ),
        quiet: bool = options.quiet(),
    ) -> None:
        """Embed images (or captions) with a CLIP model; re-running on the same --out resumes where it stopped."""
        from clipctl.errors import ClipctlError

        if (src is None) == (text is None):
            raise ClipctlError("give either SRC (images) or --text FILE (captions), not both or neither")
        from rich.markup import escape

        from clipctl.embed import EmbedOptions, embed_images, embed_texts

        options = EmbedOptions(
            model=model,
            pretrained=pretrained,
            batch_size=batch_size,
            workers=workers,
            device=device,
            precision=precision,
            normalize=not no_normalize,
            fast_decode=fast_decode,
            format=fmt,
            progress=not quiet,
            announce=lambda message: err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True),
        )
        model_name = options.weights()[0]
        if options.random_weights():
            err.print(
                f"[yellow]note:[/] no --pretrained: {model_name} embeds with randomly initialised weights",
                soft_wrap=True,
            )
        if text is not None:
            summary = embed_texts(text, out_path, options)
        else:
            summary = embed_images(src, out_path, options)

        unit = "captions" if summary.modality == "text" else "images"
        line = f"embedded {summary.embedded} {unit}"
        if summary.embedded:
            line += f" ({summary.per_second:.1f}/s, dim {summary.dim})"
        if summary.skipped:
            line += f", skipped {summary.skipped} already in the output"
        if summary.failed:
            line += f", [yellow]{summary.failed} unreadable[/] (listed in {escape(str(summary.errors_path))})"
        out.print(f"{line}; {escape(summary.out)} holds {summary.total_rows} rows", soft_wrap=True)
