"""`clipctl demo`: generate data, train, evaluate and embed on this machine, then print what happened."""

from __future__ import annotations

from pathlib import Path

import typer

from clipctl.cli.console import err, out


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out_dir: Path = typer.Option(
            Path("demo"), "--out", "-o", help="Folder for the data, the run and the results."
        ),
        quick: bool = typer.Option(False, "--quick", help="A much shorter run (well above chance, not 90%)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the generated data and of training."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace a different demo run already in --out."
        ),
    ) -> None:
        """The whole toolkit end to end on generated data: synth -> train -> zeroshot -> embed -> search (minutes on a CPU)."""
        from clipctl.demo.pipeline import run_demo
        from clipctl.demo.report import render_report

        def announce(message: str) -> None:
            err.print(f"[bold cyan]demo[/] {message}", highlight=False)

        report = run_demo(out_dir, quick=quick, seed=seed, overwrite=overwrite, announce=announce)
        out.print(render_report(report), highlight=False, soft_wrap=True)
