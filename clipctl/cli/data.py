"""`clipctl data build|pack|inspect|synth`: webdataset shards from URL lists, local files or a generator."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import typer

from clipctl.cli.console import err, out

_RESIZE_HELP = "no | keep_ratio | keep_ratio_largest | center_crop | border (img2dataset's modes)."


def _default_processes() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def register(app: typer.Typer) -> None:
    data = typer.Typer(
        help="Build, pack, inspect and generate webdataset shards (img2dataset layout, plus sizes.json).",
        no_args_is_help=True,
    )

    @data.command("build")
    def build(
        url_list: Path = typer.Argument(
            ..., help="URL list: .csv, .tsv, .parquet or .txt (one URL a line; .gz ok)."
        ),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Shard folder to write."),
        url_col: str = typer.Option("url", "--url-col", help="Column holding the URLs."),
        caption_col: str = typer.Option(
            None, "--caption-col", help="Column holding the captions [default: 'caption' when there is one]."
        ),
        image_size: int = typer.Option(256, "--image-size", help="Side of the stored images."),
        resize_mode: str = typer.Option("border", "--resize-mode", help=_RESIZE_HELP),
        processes: int = typer.Option(
            1, "--processes", help="Download processes (one shard each at a time)."
        ),
        threads: int = typer.Option(32, "--threads", help="Download threads per process."),
        samples_per_shard: int = typer.Option(10_000, "--samples-per-shard", help="Input rows per shard."),
        encode_quality: int = typer.Option(95, "--encode-quality", help="JPEG quality of the stored images."),
        retries: int = typer.Option(0, "--retries", help="Download retries per image."),
        timeout: int = typer.Option(10, "--timeout", help="Seconds before a download is given up."),
        incremental: bool = typer.Option(
            False, "--incremental", help="Resume: keep finished shards, do the rest."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the shards already in --out."),
        min_success_rate: float = typer.Option(
            0.2, "--min-success-rate", help="Fail (exit 1) when fewer than this fraction of images succeed."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Hide img2dataset's own progress output."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Download a URL list into webdataset shards with img2dataset, then check how much succeeded."""
        from clipctl.data.build import BuildFailed, BuildOptions, build_shards

        try:
            summary = build_shards(
                url_list,
                out_dir,
                BuildOptions(
                    url_col=url_col,
                    caption_col=caption_col,
                    image_size=image_size,
                    resize_mode=resize_mode,
                    processes=processes,
                    threads=threads,
                    samples_per_shard=samples_per_shard,
                    encode_quality=encode_quality,
                    retries=retries,
                    timeout=timeout,
                    incremental=incremental,
                    overwrite=overwrite,
                    min_success_rate=min_success_rate,
                    img2dataset_output="null" if quiet else "stderr",
                ),
            )
        except BuildFailed as failure:
            _print_build_summary(failure.summary, as_json)
            raise
        _print_build_summary(summary, as_json)

    @data.command("pack")
    def pack(
        src: Path = typer.Argument(
            ..., help="Folder of images with same-named .txt captions, or a CSV/TSV file."
        ),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Shard folder to write."),
        img_key: str = typer.Option("filepath", "--img-key", help="CSV column with the image paths."),
        caption_key: str = typer.Option("title", "--caption-key", help="CSV column with the captions."),
        separator: str = typer.Option(
            None, "--separator", help="CSV separator: ',', 'tab' ... [default: detected from the header]."
        ),
        samples_per_shard: int = typer.Option(10_000, "--samples-per-shard", help="Samples per shard."),
        image_size: int = typer.Option(
            None,
            "--image-size",
            help="Resize and re-encode to JPEG at this size [default: keep the files as they are].",
        ),
        resize_mode: str = typer.Option("border", "--resize-mode", help=_RESIZE_HELP),
        encode_quality: int = typer.Option(95, "--encode-quality", help="JPEG quality when re-encoding."),
        processes: int = typer.Option(
            None, "--processes", help="Worker processes, one shard each [default: CPU cores, at most 8]."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the shards already in --out."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Pack local images and captions into shards: no network, deterministic, parallel."""
        from clipctl.data.pack import pack_dataset

        with err.status("packing shards ..."):
            summary = pack_dataset(
                src,
                out_dir,
                img_key=img_key,
                caption_key=caption_key,
                separator=_separator(separator),
                samples_per_shard=samples_per_shard,
                image_size=image_size,
                resize_mode=resize_mode,
                encode_quality=encode_quality,
                processes=processes or _default_processes(),
                overwrite=overwrite,
            )
        if as_json:
            out.print_json(json.dumps(asdict(summary)))
            return
        from rich.markup import escape
        from rich.table import Table

        table = Table("", "value", title=escape(f"packed {src} -> {summary.out_dir}"))
        table.add_row("inputs", str(summary.num_inputs))
        table.add_row("written", f"[green]{summary.num_written}[/green]")
        table.add_row("skipped", f"[red]{len(summary.skipped)}[/red]" if summary.skipped else "0")
        table.add_row("shards", str(summary.num_shards))
        table.add_row("sizes", summary.sizes_file)
        out.print(table)
        if summary.skipped:
            for source, reason in summary.skipped[:5]:
                out.print(f"  skipped {source}: {reason}", markup=False, highlight=False)
            more = len(summary.skipped) - 5
            out.print(
                f"  ... {more} more; all listed in {summary.errors_file}"
                if more > 0
                else f"  listed in {summary.errors_file}"
            )

    @data.command("inspect")
    def inspect(
        shards: str = typer.Argument(
            ..., help="A .tar, a brace pattern 'dir/{00000..00009}.tar', or a folder."
        ),
        check_images: bool = typer.Option(False, "--check-images", help="Decode every image (slower)."),
        examples: int = typer.Option(5, "--examples", help="Example captions to show."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Count shards and samples, list the keys present, find unreadable samples; exit 1 on problems."""
        from clipctl.data.inspect_shards import inspect_shards
        from clipctl.errors import RunFailure

        with err.status("reading shards ..."):
            report = inspect_shards(shards, check_images=check_images, max_examples=examples)
        if as_json:
            out.print_json(json.dumps(report.to_json()))
        else:
            _print_inspect_report(report)
        if report.problems:
            raise RunFailure(f"{len(report.problems)} problem(s) found in {shards}: {report.problems[0]}")

    @data.command("synth")
    def synth(
        out_dir: Path = typer.Option(
            ..., "--out", "-o", help="Folder for the shards, held-out split and classnames."
        ),
        seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
        num_train: int = typer.Option(10_000, "--num-train", help="Training samples (image + caption)."),
        num_heldout_per_class: int = typer.Option(
            20, "--num-heldout-per-class", help="Held-out images per class."
        ),
        image_size: int = typer.Option(64, "--image-size", help="Image side in pixels."),
        samples_per_shard: int = typer.Option(1000, "--samples-per-shard", help="Samples per shard."),
        processes: int = typer.Option(
            None, "--processes", help="Worker processes [default: CPU cores, at most 8]."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace what is in --out."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Generate coloured-shape images with varied captions: shards, an ImageFolder held-out split, classnames."""
        from clipctl.data.synth import synthesize_dataset

        with err.status("drawing shapes ..."):
            summary = synthesize_dataset(
                out_dir,
                seed=seed,
                num_train=num_train,
                num_heldout_per_class=num_heldout_per_class,
                image_size=image_size,
                samples_per_shard=samples_per_shard,
                processes=processes or _default_processes(),
                overwrite=overwrite,
            )
        if as_json:
            out.print_json(json.dumps(asdict(summary)))
            return
        from rich.table import Table

        verb = "already there" if summary.reused else "written"
        table = Table("", "value", title=f"synthetic shapes dataset ({verb})")
        table.add_row(
            "train shards",
            f"{summary.train_shards} ({summary.num_train} samples, {summary.num_shards} shards)",
        )
        table.add_row("held-out split", f"{summary.heldout_dir} ({summary.num_heldout} images)")
        table.add_row("classes", f"{len(summary.classnames)}: {', '.join(summary.classnames[:4])}, ...")
        table.add_row("classnames", summary.classnames_file)
        table.add_row("templates", summary.templates_file)
        table.add_row("seed / image size", f"{summary.seed} / {summary.image_size} px")
        out.print(table)

    app.add_typer(data, name="data")


def _separator(value: str | None) -> str | None:
    from clipctl.data.csv_table import parse_separator

    return None if value is None else parse_separator(value)


def _print_build_summary(summary, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({**asdict(summary), "success_rate": summary.success_rate}))
        return
    from rich.markup import escape
    from rich.table import Table

    def share(n: int) -> str:
        return f"{n / summary.count:.1%}" if summary.count else "-"

    table = Table(
        "",
        "samples",
        "share",
        title=escape(f"img2dataset into {summary.out_dir} ({summary.num_shards} shards)"),
    )
    table.add_row("total", str(summary.count), "")
    table.add_row("[green]success[/green]", str(summary.successes), share(summary.successes))
    table.add_row(
        "[red]failed to download[/red]", str(summary.failed_to_download), share(summary.failed_to_download)
    )
    table.add_row(
        "[red]failed to resize[/red]", str(summary.failed_to_resize), share(summary.failed_to_resize)
    )
    out.print(table)
    if summary.reasons:
        reasons = Table("failure reason", "samples", title="most common failures")
        for message, n in summary.reasons[:10]:
            reasons.add_row(escape(message), str(n))
        out.print(reasons)
    if summary.sizes_file:
        out.print(f"sizes: {summary.sizes_file}", highlight=False)


def _print_inspect_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("shard", "samples", "sizes.json", "stats", "status", title=escape(report.spec))
    for shard in report.shards[:20]:
        bad = shard.error or shard.missing_image or shard.missing_caption or shard.num_unreadable
        table.add_row(
            os.path.basename(shard.path),
            str(shard.samples),
            "-" if shard.sizes_json is None else str(shard.sizes_json),
            "-" if shard.stats_successes is None else str(shard.stats_successes),
            "[red]problem[/red]" if bad else "ok",
        )
    if len(report.shards) > 20:
        table.add_row(f"... {len(report.shards) - 20} more", "", "", "", "")
    out.print(table)
    out.print(f"{len(report.shards)} shards, {report.num_samples} samples", highlight=False)
    keys = ", ".join(f"{ext} ({n})" for ext, n in report.extensions.items()) or "none"
    out.print(f"keys: {keys}", highlight=False)
    if report.checked_images:
        unreadable = sum(s.num_unreadable for s in report.shards)
        out.print(f"unreadable samples: {unreadable}", highlight=False)
        for shard in report.shards:
            for key, reason in shard.unreadable[:5]:
                out.print(f"  {os.path.basename(shard.path)}/{key}: {reason}", markup=False, highlight=False)
    if report.examples:
        out.print("example captions:")
        for key, caption in report.examples:
            out.print(f"  {key}: {caption}", markup=False, highlight=False)
    for note in report.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    for problem in report.problems:
        out.print(f"[red]problem:[/red] {escape(problem)}", highlight=False)
