"""`clipctl eval linear-probe`: logistic regression on cached image features, scored on a test set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clipctl.cli import options
from clipctl.cli.console import err


def print_probe_table(doc: dict[str, Any]) -> None:
    from clipctl.cli.zeroshot import print_classification_table

    shots = f"{doc['few_shot']}-shot" if doc["few_shot"] else "all training images"
    title = (
        f"linear probe: {doc['model']} ({doc['pretrained'] or 'random weights'}), {shots} "
        f"({doc['num_train']} images, seed {doc['seed']}), weight decay {doc['weight_decay']:.3g}"
    )
    print_classification_table([doc], title)


def print_probe_notes(doc: dict[str, Any]) -> None:
    from rich.markup import escape

    features = doc["features"]
    for split in ("train", "test"):
        counts = features[split]
        err.print(
            f"features ({split}): {counts['cached']} from the cache, {counts['encoded']} encoded",
            soft_wrap=True,
        )
    if doc["num_unreadable"]:
        first = doc["unreadable"][0]
        err.print(
            f"[yellow]note:[/] skipped {doc['num_unreadable']} unreadable image(s) "
            f"(first: {escape(first[0])}: {escape(first[1])})",
            soft_wrap=True,
        )
    for note in doc.get("notes", []):
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


def register_linear_probe(eval_app: typer.Typer) -> None:
    @eval_app.command("linear-probe")
    def linear_probe(
        model: str = typer.Option(
            ..., "--model", help="Model name (see `clipctl models list`) or config JSON."
        ),
        pretrained: str = typer.Option(
            ...,
            "--pretrained",
            help="Pretrained tag or weights file; 'none' for random weights (never cached).",
        ),
        train: str = typer.Option(
            ...,
            "--train",
            help="Training images: an ImageFolder, a CSV/TSV of image paths and labels, or a CLIP_benchmark "
            "wds folder (its --train-split).",
        ),
        test: str = typer.Option(..., "--test", help="Test images, in any of the --train forms."),
        few_shot: int = typer.Option(None, "--few-shot", help="Train on K images per class (seeded)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the few-shot sample and the held-out split."),
        val_fraction: float = typer.Option(
            0.2,
            "--val-fraction",
            help="Share of each class's training images held out to choose the weight decay.",
        ),
        weight_decay: float = typer.Option(
            None,
            "--wd",
            help="Use this weight decay (L2 strength) instead of searching for one.",
            show_default=False,
        ),
        max_iter: int = typer.Option(1000, "--max-iter", help="L-BFGS iterations at most, per fit."),
        out_path: Path = typer.Option(None, "--out", "-o", help="Results JSON."),
        fmt: str = options.results_format(),
        overwrite: bool = options.overwrite_results(),
        cache_dir: Path = typer.Option(
            None,
            "--cache-dir",
            help="Feature cache  \\[default: $CLIPCTL_CACHE_DIR/features or ~/.cache/clipctl/features]",
            show_default=False,
        ),
        no_cache: bool = typer.Option(
            False, "--no-cache", help="Compute features without reading or writing the cache."
        ),
        train_split: str = typer.Option(
            "train", "--train-split", help="Split of a CLIP_benchmark --train folder."
        ),
        test_split: str = typer.Option(
            "test", "--test-split", help="Split of a CLIP_benchmark --test folder."
        ),
        csv_img_key: str = typer.Option("filepath", "--csv-img-key", help="CSV column with image paths."),
        csv_label_key: str = typer.Option("label", "--csv-label-key", help="CSV column with class labels."),
        csv_separator: str = options.csv_separator(),
        batch_size: int = options.batch_size("Images per batch (feature extraction)."),
        workers: int = options.loader_workers(),
        device: str = options.device("cpu, cuda, cuda:N or mps (features and fitting)."),
        precision: str = options.eval_precision("fp32 | bf16 | fp16 | amp | amp_bf16 (features)."),
        quiet: bool = options.quiet(),
    ) -> None:
        """Linear probe: logistic regression on frozen image features (weight decay chosen on held-out data)."""
        from clipctl.cli.results import save_results
        from clipctl.eval.linear_probe import LinearProbeOptions, linear_probe_document

        probe_options = LinearProbeOptions(
            model=model,
            pretrained=pretrained,
            train=train,
            test=test,
            few_shot=few_shot,
            seed=seed,
            val_fraction=val_fraction,
            weight_decay=weight_decay,
            max_iter=max_iter,
            out=out_path,
            format=fmt,
            overwrite=overwrite,
            cache_dir=cache_dir,
            use_cache=not no_cache,
            train_split=train_split,
            test_split=test_split,
            csv_img_key=csv_img_key,
            csv_label_key=csv_label_key,
            csv_separator=csv_separator,
            batch_size=batch_size,
            workers=workers,
            device=device,
            precision=precision,
            progress=not quiet,
        )
        doc = linear_probe_document(probe_options)
        print_probe_notes(doc)
        print_probe_table(doc)
        save_results(out_path, [doc], fmt, overwrite)
