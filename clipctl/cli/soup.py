"""`clipctl soup` (uniform, weighted or greedy weight-space averages) and `clipctl wise-ft` (interpolation between
a zero-shot and a fine-tuned model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clipctl.cli import options
from clipctl.cli.console import err, out

_OUT_HELP = (
    "A .safetensors / .pt / .pth / .bin file (a plain state dict), or a folder written in the Hub layout "
    "(open_clip_config.json + open_clip_model.safetensors + README.md; local-dir:FOLDER loads it)."
)
_MODEL_HELP = (
    "Architecture (registry name or .json): needed to evaluate on --data and for a folder --out, unless a "
    "checkpoint is a Hub-layout folder or sits in a clipctl run folder."
)


def _classnames_option() -> Any:
    return typer.Option(None, "--classnames", help="With --data: one class name per line, in folder order.")


def _templates_option() -> Any:
    return typer.Option(None, "--templates", help="openai | simple | FILE (see `clipctl zeroshot`).")


def _held_out(
    data: Path | None,
    classnames: Path | None,
    templates: str | None,
    split: str,
    batch_size: int,
    workers: int | None,
    device: str,
    precision: str,
    quiet: bool,
) -> Any:
    from clipctl.soup.heldout import HeldOutOptions

    if data is None:
        if classnames is not None or templates is not None:
            from clipctl.errors import ClipctlError

            raise ClipctlError("--classnames and --templates go with --data")
        return None
    return HeldOutOptions(
        data=str(data),
        classnames=None if classnames is None else str(classnames),
        templates=templates,
        split=split,
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        progress=not quiet,
    )


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def print_greedy_steps(greedy: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title="greedy soup: checkpoints by held-out top-1, each kept if the soup does not get worse"
    )
    for column in ("checkpoint", "alone", "soup after", "kept"):
        table.add_column(column, justify="left" if column == "checkpoint" else "right")
    for step in greedy.steps:
        table.add_row(
            escape(step.checkpoint),
            _percent(step.top1),
            _percent(step.soup_top1),
            "yes" if step.kept else "no",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    _register_soup(app)
    _register_wise_ft(app)


def _register_soup(app: typer.Typer) -> None:
    @app.command("soup")
    def soup(
        checkpoints: list[str] = typer.Argument(
            ...,
            help="Checkpoints of one architecture: weights files, local-dir:PATH (or a Hub-layout folder), hf-hub:ORG/REPO.",
        ),
        out_path: Path = typer.Option(..., "--out", "-o", help=_OUT_HELP),
        model: str = typer.Option(None, "--model", help=_MODEL_HELP),
        weights: str = typer.Option(
            None,
            "--weights",
            help="Weighted average: one weight per checkpoint, summing to 1 (e.g. 0.6,0.4).",
        ),
        greedy: bool = typer.Option(
            False,
            "--greedy",
            help="Greedy soup: add a checkpoint only if held-out zero-shot top-1 does not drop.",
        ),
        data: Path = typer.Option(
            None, "--data", help="With --greedy: held-out ImageFolder or CLIP_benchmark wds folder."
        ),
        classnames: Path = _classnames_option(),
        templates: str = _templates_option(),
        results: Path = typer.Option(
            None,
            "--results",
            help="With --greedy: JSON of each checkpoint's and the soup's held-out results.",
        ),
        split: str = options.wds_split(),
        batch_size: int = options.batch_size("Images per batch (held-out evaluation)."),
        workers: int = options.loader_workers(),
        device: str = options.device("cpu, cuda, cuda:N or mps (held-out evaluation)."),
        precision: str = options.eval_precision("fp32 | bf16 | fp16 | amp | amp_bf16 (evaluation only)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out / --results."),
        unsafe_load: bool = options.unsafe_load(),
        quiet: bool = options.quiet(),
    ) -> None:
        """Average checkpoints of one architecture (a model soup): uniform, weighted, or greedy."""
        from rich.markup import escape

        from clipctl.soup.soup_job import SoupOptions, run_soup

        held_out = _held_out(
            data, classnames, templates, split, batch_size, workers, device, precision, quiet
        )
        summary = run_soup(
            SoupOptions(
                checkpoints=list(checkpoints),
                out=out_path,
                model=model,
                weights=weights,
                greedy=greedy,
                held_out=held_out,
                results=results,
                overwrite=overwrite,
                weights_only=not unsafe_load,
            )
        )
        if summary.greedy is not None:
            print_greedy_steps(summary.greedy)
            out.print(
                f"greedy soup: {len(summary.greedy.kept)} of {len(checkpoints)} checkpoints, held-out top-1 {_percent(summary.greedy.top1)}"
            )
        used = sum(1 for w in summary.weights if w > 0)
        out.print(
            escape(f"wrote a {summary.method} soup of {used} checkpoint(s) to {summary.out}"), soft_wrap=True
        )
        if summary.results is not None:
            err.print(escape(f"results written to {summary.results}"), soft_wrap=True)


def _register_wise_ft(app: typer.Typer) -> None:
    @app.command("wise-ft")
    def wise_ft(
        zeroshot: str = typer.Option(..., "--zeroshot", help="The zero-shot (pre-trained) checkpoint."),
        finetuned: str = typer.Option(
            ..., "--finetuned", help="The fine-tuned checkpoint of the same architecture."
        ),
        alpha: str = typer.Option(
            "0.5",
            "--alpha",
            help="Mixing weight of the fine-tuned model, 0..1; several (0,0.25,0.5,0.75,1) with --data.",
        ),
        out_path: Path = typer.Option(..., "--out", "-o", help=_OUT_HELP),
        model: str = typer.Option(None, "--model", help=_MODEL_HELP),
        data: Path = typer.Option(
            None,
            "--data",
            help="Held-out ImageFolder or CLIP_benchmark wds folder: evaluate each alpha, keep the best.",
        ),
        classnames: Path = _classnames_option(),
        templates: str = _templates_option(),
        results: str = typer.Option(
            None,
            "--results",
            help="Where each alpha's results go, with {alpha} in the name  \\[default: OUT.alpha{alpha}.json]",
            show_default=False,
        ),
        split: str = options.wds_split(),
        batch_size: int = options.batch_size("Images per batch (held-out evaluation)."),
        workers: int = options.loader_workers(),
        device: str = options.device("cpu, cuda, cuda:N or mps (held-out evaluation)."),
        precision: str = options.eval_precision("fp32 | bf16 | fp16 | amp | amp_bf16 (evaluation only)."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing --out / results files."
        ),
        unsafe_load: bool = options.unsafe_load(),
        quiet: bool = options.quiet(),
    ) -> None:
        """WiSE-FT: (1 - alpha) * zero-shot + alpha * fine-tuned weights; with --data, the best alpha is kept."""
        from rich.markup import escape

        from clipctl.soup.wise_ft_job import WiseFtOptions, run_wise_ft

        held_out = _held_out(
            data, classnames, templates, split, batch_size, workers, device, precision, quiet
        )
        summary = run_wise_ft(
            WiseFtOptions(
                zeroshot=zeroshot,
                finetuned=finetuned,
                out=out_path,
                alphas=alpha,
                model=model,
                held_out=held_out,
                results=results,
                overwrite=overwrite,
                weights_only=not unsafe_load,
            )
        )
        if summary.top1:
            from rich.table import Table

            table = Table(title="WiSE-FT: held-out zero-shot top-1 per alpha")
            table.add_column("alpha", justify="right")
            table.add_column("top-1", justify="right")
            table.add_column("results")
            for a, top1 in summary.top1.items():
                mark = " (kept)" if a == summary.alpha else ""
                table.add_row(f"{a:g}{mark}", _percent(top1), escape(str(summary.results[a])))
            out.print(table)
        out.print(escape(f"wrote the alpha={summary.alpha:g} mix to {summary.out}"), soft_wrap=True)
