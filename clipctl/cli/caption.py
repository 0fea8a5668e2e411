"""`clipctl caption IMAGE...`: captions from a CoCa model, one line per image."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from clipctl.caption import GENERATION_TYPES
from clipctl.cli.console import err, out


def register(app: typer.Typer) -> None:
    @app.command("caption")
    def caption(
        images: list[Path] = typer.Argument(..., help="Image files to caption."),
        model: str = typer.Option(
            "coca_ViT-B-32",
            "--model",
            help="A CoCa model: registry name, hf-hub:ORG/REPO, local-dir:PATH or a .json config.",
        ),
        pretrained: str = typer.Option(
            None,
            "--pretrained",
            help="Pretrained tag (e.g. mscoco_finetuned_laion2b_s13b_b90k) or checkpoint file.",
        ),
        generation_type: str = typer.Option(
            "beam_search",
            "--generation-type",
            help="beam_search | top_k | top_p.",
            autocompletion=lambda incomplete: [t for t in GENERATION_TYPES if t.startswith(incomplete)],
        ),
        max_len: int = typer.Option(
            30, "--max-len", help="Longest caption in tokens, start and end included."
        ),
        num_beams: int = typer.Option(6, "--num-beams", help="Beams (beam_search)."),
        num_beam_groups: int = typer.Option(
            3, "--num-beam-groups", help="Diverse beam groups (beam_search)."
        ),
        top_k: int = typer.Option(1, "--top-k", help="Sample among the k most likely tokens (top_k)."),
        top_p: float = typer.Option(0.1, "--top-p", help="Nucleus probability mass (top_p)."),
        temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (top_k, top_p)."),
        repetition_penalty: float = typer.Option(
            1.0, "--repetition-penalty", help="Penalty > 1 discourages repeated tokens."
        ),
        seed: int = typer.Option(None, "--seed", help="Random seed, for repeatable sampling."),
        batch_size: int = typer.Option(8, "--batch-size", help="Images per forward pass."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps, ..."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {path, caption} instead."),
        unsafe_load: bool = typer.Option(
            False,
            "--unsafe-load",
            help="Allow pickled checkpoints that need code to load (trusted files only).",
        ),
    ) -> None:
        """Caption images with a CoCa model (one `PATH<TAB>caption` line per image)."""
        from clipctl.caption import CaptionOptions, caption_images
        from clipctl.errors import RunFailure

        options = CaptionOptions(
            generation_type=generation_type,
            max_len=max_len,
            num_beams=num_beams,
            num_beam_groups=num_beam_groups,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            repetition_penalty=repetition_penalty,
            seed=seed,
        )

        def show(item) -> None:
            if as_json:
                return
            if item.error is not None:
                err.print(
                    f"clipctl: skipped {item.path}: {item.error}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
            else:
                # plain text: rich would expand the tab, and the lines are meant for `cut -f2` and friends
                typer.echo(f"{item.path}\t{item.caption}")

        results = caption_images(
            [str(p) for p in images],
            model,
            pretrained,
            options=options,
            device=device,
            batch_size=batch_size,
            weights_only=not unsafe_load,
            on_caption=show,
        )
        if as_json:
            rows = [
                {"path": r.path, "caption": r.caption, **({"error": r.error} if r.error else {})}
                for r in results
            ]
            out.print_json(json.dumps(rows))
        failed = sum(r.error is not None for r in results)
        if failed:
            raise RunFailure(f"{failed} of {len(results)} image(s) could not be read")
