"""`clipctl demo`: the whole toolkit on generated data, end to end, through the same jobs the other commands run.

1. ``clipctl data synth``   coloured shapes -> webdataset shards + a held-out ImageFolder split
2. ``clipctl train``        the ``demo`` recipe on those shards -> run folder, checkpoints, metrics.jsonl
3. ``clipctl zeroshot``     the final checkpoint on the held-out split -> results JSON
4. ``clipctl embed``        the held-out images -> Parquet; ``clipctl index`` + ``clipctl search`` over them
5. two PNGs in the run folder: the loss curve, and a grid of held-out images with the predicted class

Every step calls the job function behind the command, so the demo fails exactly where a user's run would.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clipctl.demo.outdir import check_demo_disk_space, prepare_demo_dir, read_manifest, write_manifest
from clipctl.demo.settings import (
    DATA_DIR,
    EMBEDDINGS_FILE,
    INDEX_DIR,
    LOSS_CURVE_FILE,
    MANIFEST_VERSION,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_NAME,
    RUNS_DIR,
    DemoSettings,
    settings_for,
)
from clipctl.errors import ClipctlError, RunFailure

Announce = Callable[[str], None]


@dataclass
class LossSummary:
    first: float
    last: float
    min: float
    min_step: int
    steps: int


@dataclass
class DemoReport:
    """What the demo did and where everything went (also saved as ``demo.json`` in the output folder)."""

    out_dir: str
    quick: bool
    seed: int
    recipe: str
    model: str
    data_dir: str
    num_train: int
    num_heldout: int
    num_classes: int
    run_dir: str
    checkpoint: str
    results_json: str
    embeddings_parquet: str
    loss_curve_png: str
    predictions_png: str
    samples_per_second: float
    loss: LossSummary
    top1: float
    top5: float
    chance_top1: float
    chance_top5: float
    num_embedded: int
    data_reused: bool
    seconds: dict[str, float] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)  # clipctl.search.showcase.SearchShowcase as a dict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _say(announce: Announce | None, message: str) -> None:
    if announce is not None:
        announce(message)


def _recipe_model(settings: DemoSettings) -> tuple[str, int]:
    """The recipe's model name and its input size (the generated images are drawn at that size)."""
    from clipctl.config.recipes import load_recipe
    from clipctl.config.resolver import resolve_model

    recipe = load_recipe(settings.recipe)
    model = str(recipe.args.get("model", ""))
    if not model:
        raise ClipctlError(f"recipe {recipe.path} names no model")
    size = resolve_model(model).model_cfg["vision_cfg"]["image_size"]
    size = size if isinstance(size, int) else max(size)
    return model, int(size)


def _parameters(settings: DemoSettings, seed: int, model: str, image_size: int) -> dict[str, Any]:
    from clipctl.data.synth import GENERATOR_VERSION

    return {
        "version": MANIFEST_VERSION,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "model": model,
        "image_size": image_size,
        **settings.to_dict(),
    }


def estimate_disk_bytes(settings: DemoSettings, image_size: int, num_params: int) -> int:
    """Generated data (JPEG shards + PNG held-out split), two checkpoints during the swap, and slack."""
    pixels = image_size * image_size
    num_classes = _num_classes()
    data = settings.num_train * (3 * 1024 + pixels) + settings.num_heldout_per_class * num_classes * (
        4096 + 3 * pixels
    )
    # A checkpoint holds the weights and AdamW's two moments in float32; the previous epoch's is deleted only
    # after the next one is written.
    checkpoints = 2 * 3 * 4 * num_params
    return int(1.3 * (data + checkpoints)) + (16 << 20)


def _num_classes() -> int:
    from clipctl.data.synth import class_folders

    return len(class_folders())


def _count_params(model: str) -> int:
    import torch

    from clipctl.api import create_model

    with torch.device("meta"):
        net = create_model(model, device="meta")
    return sum(p.numel() for p in net.parameters())


def read_train_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The ``train`` records of ``metrics.jsonl``, in step order."""
    path = run_dir / "metrics.jsonl"
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise RunFailure(f"training left no metrics in {path}: {err.strerror}") from err
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "train" and isinstance(record.get("loss"), (int, float)):
            records.append(record)
    return sorted(records, key=lambda r: r["step"])


def summarize_loss(records: list[dict[str, Any]]) -> LossSummary:
    if not records:
        raise RunFailure("training logged no loss values")
    losses = [float(r["loss"]) for r in records]
    best = min(range(len(losses)), key=losses.__getitem__)
    return LossSummary(
        first=losses[0],
        last=losses[-1],
        min=losses[best],
        min_step=int(records[best]["step"]),
        steps=int(records[-1]["step"]),
    )


def steady_samples_per_second(records: list[dict[str, Any]]) -> float:
    """Median throughput of the logging windows, leaving out the first (loader start-up, first batches)."""
    rates = [float(r["samples_per_second"]) for r in records if r.get("samples_per_second")]
    if len(rates) > 2:
        rates = rates[1:]
    if not rates:
        return 0.0
    rates.sort()
    middle = len(rates) // 2
    return rates[middle] if len(rates) % 2 else 0.5 * (rates[middle - 1] + rates[middle])


def _train(data_summary: Any, settings: DemoSettings, runs_dir: Path, seed: int) -> tuple[Path, Path]:
    """Train through ``clipctl train``'s job; return the run folder and its final checkpoint."""
    from clipctl.config.run import resolve_run_config
    from clipctl.train.trainer import run_dir_of, run_training

    cfg = resolve_run_config(
        settings.recipe,
        {"train_data": data_summary.train_shards, "logs": str(runs_dir), "name": RUN_NAME, "seed": seed},
        [],
    )
    trainer = run_training(cfg)
    run_dir = run_dir_of(cfg)
    checkpoint = trainer.last_checkpoint
    if run_dir is None or checkpoint is None or not Path(checkpoint).is_file():
        raise RunFailure(f"training finished without writing a checkpoint in {run_dir}")
    return run_dir, Path(checkpoint)


def _zero_shot(model: str, checkpoint: Path, data_summary: Any, results_json: Path) -> dict[str, Any]:
    """``clipctl zeroshot`` on the held-out split; returns the results it wrote.

    The one call into the toolkit's zero-shot job: the demo only chooses the inputs and where the JSON goes.
    """
    from clipctl.eval.zeroshot_job import ZeroShotOptions, run_zeroshot

    return run_zeroshot(
        ZeroShotOptions(
            model,
            str(checkpoint),
            data=data_summary.heldout_dir,
            classnames=data_summary.classnames_file,
            templates=data_summary.templates_file,
            out=str(results_json),
        )
    )


def _top_k(results: dict[str, Any], k: int) -> float:
    """The top-k accuracy, a fraction, of the zero-shot job's document (``metrics.top1`` / ``metrics.top5``)."""
    value = (results.get("metrics") or {}).get(f"top{k}")
    if not isinstance(value, (int, float)):
        raise RunFailure(f"the zero-shot results hold no metrics.top{k}")
    return float(value)


def _embed(model: str, checkpoint: Path, heldout_dir: str, parquet: Path) -> int:
    from clipctl.embed.job import EmbedOptions, embed_images

    summary = embed_images(heldout_dir, parquet, EmbedOptions(model, str(checkpoint), batch_size=64))
    return summary.total_rows


def _search(parquet: Path, index_dir: Path, data_summary: Any, top1: float) -> dict[str, Any]:
    """``clipctl index`` over the held-out embeddings, an example query, and precision@10 per class."""
    from clipctl.data.synth import class_folders
    from clipctl.search.showcase import index_and_search

    folders = [folder for folder, _, _ in class_folders()]
    return index_and_search(parquet, index_dir, folders, data_summary.classnames, top1).to_dict()


def _prediction_grid(
    model: str, checkpoint: Path, data_summary: Any, parquet: Path, png: Path, count: int
) -> None:
    """Label a few held-out images with the class whose prompts best match their stored embeddings."""
    import pyarrow.parquet as pq
    import torch

    from clipctl.api import create_model, get_tokenizer
    from clipctl.demo.plots import LabelledImage, plot_prediction_grid
    from clipctl.eval.zeroshot import build_zero_shot_classifier
    from clipctl.eval.zeroshot_metadata import load_classnames, load_templates

    table = pq.read_table(parquet)
    key_column = table.column_names[0]
    keys = table.column(key_column).to_pylist()
    heldout = Path(data_summary.heldout_dir)
    folders = sorted(p.name for p in heldout.iterdir() if p.is_dir())
    classnames = load_classnames(data_summary.classnames_file)
    # One image from each of `count` classes picked at random (but always the same), so the grid mixes colours
    # and shapes.
    picked = sorted(random.Random(0).sample(range(len(folders)), min(count, len(folders))))
    wanted_folders = [folders[i] for i in picked]
    chosen: list[int] = []
    for folder in wanted_folders:
        for index, key in enumerate(keys):
            if Path(key).parts[-2:-1] == (folder,) and index not in chosen:
                chosen.append(index)
                break
    if not chosen:
        raise RunFailure(f"no held-out image of {heldout} is in {parquet}")
    import numpy as np

    rows = table.column("embedding").to_numpy(zero_copy_only=False)
    embeddings = torch.from_numpy(np.stack([rows[i] for i in chosen]).astype(np.float32))
    net = create_model(model, str(checkpoint))
    net.eval()
    tokenizer = get_tokenizer(model)
    classifier = build_zero_shot_classifier(
        net, tokenizer, classnames, load_templates(data_summary.templates_file)
    )
    embeddings = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    predicted = (embeddings @ classifier).argmax(dim=1).tolist()
    items = []
    for index, label in zip(chosen, predicted, strict=True):
        key = keys[index]
        path = Path(key) if Path(key).is_absolute() else heldout / key
        true_class = classnames[folders.index(Path(key).parts[-2])]
        items.append(LabelledImage(str(path), true_class, classnames[label]))
    plot_prediction_grid(items, png, columns=4)


class _StageClock:
    """Seconds per stage, and one line to ``announce`` as each stage starts."""

    def __init__(self, announce: Announce | None) -> None:
        self.announce = announce
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, message: str | None = None) -> Iterator[None]:
        mark = time.perf_counter()
        if message is not None:
            _say(self.announce, message)
        yield
        self.seconds[name] = time.perf_counter() - mark


@dataclass
class _StageOutputs:
    """What the four stages made, all inside the demo's output folder."""

    data: Any  # the data.synth summary
    run_dir: Path
    checkpoint: Path
    records: list[dict[str, Any]]
    results: dict[str, Any]
    num_embedded: int
    search: dict[str, Any]


def _run_stages(
    out: Path, settings: DemoSettings, seed: int, model: str, image_size: int, clock: _StageClock
) -> _StageOutputs:
    """Generate the data, train, evaluate zero-shot, embed and search, and draw the two PNGs."""
    from clipctl.data.synth import synthesize_dataset

    with clock.stage("data", f"1/4 generating {settings.num_train:,} training images and the held-out split"):
        data = synthesize_dataset(
            out / DATA_DIR,
            seed=seed,
            num_train=settings.num_train,
            num_heldout_per_class=settings.num_heldout_per_class,
            image_size=image_size,
            samples_per_shard=settings.samples_per_shard,
            processes=_processes(),
            overwrite=True,  # the data folder is the demo's own
        )
    with clock.stage("train", f"2/4 training {model} with recipe {settings.recipe}"):
        run_dir, checkpoint = _train(data, settings, out / RUNS_DIR, seed)
    records = read_train_metrics(run_dir)
    with clock.stage("zeroshot", f"3/4 zero-shot evaluation on {data.num_heldout} held-out images"):
        results = _zero_shot(model, checkpoint, data, out / RESULTS_FILE)
    with clock.stage("embed", "4/4 embedding the held-out images, indexing and searching them"):
        num_embedded = _embed(model, checkpoint, data.heldout_dir, out / EMBEDDINGS_FILE)
    with clock.stage("search"):
        search = _search(out / EMBEDDINGS_FILE, out / INDEX_DIR, data, _top_k(results, 1))
    with clock.stage("plots"):
        from clipctl.demo.plots import plot_loss_curve

        steps, losses = [int(r["step"]) for r in records], [float(r["loss"]) for r in records]
        plot_loss_curve(steps, losses, run_dir / LOSS_CURVE_FILE)
        grid = run_dir / PREDICTIONS_FILE
        _prediction_grid(model, checkpoint, data, out / EMBEDDINGS_FILE, grid, settings.grid_images)
    return _StageOutputs(data, run_dir, checkpoint, records, results, num_embedded, search)


def _report(
    out: Path,
    quick: bool,
    seed: int,
    settings: DemoSettings,
    model: str,
    made: _StageOutputs,
    *,
    data_reused: bool,
    seconds: dict[str, float],
) -> DemoReport:
    data = made.data
    num_classes = len(data.classnames)
    return DemoReport(
        out_dir=str(out),
        quick=quick,
        seed=seed,
        recipe=settings.recipe,
        model=model,
        data_dir=data.out_dir,
        num_train=data.num_train,
        num_heldout=data.num_heldout,
        num_classes=num_classes,
        run_dir=str(made.run_dir),
        checkpoint=str(made.checkpoint),
        results_json=str(out / RESULTS_FILE),
        embeddings_parquet=str(out / EMBEDDINGS_FILE),
        loss_curve_png=str(made.run_dir / LOSS_CURVE_FILE),
        predictions_png=str(made.run_dir / PREDICTIONS_FILE),
        samples_per_second=steady_samples_per_second(made.records),
        loss=summarize_loss(made.records),
        top1=_top_k(made.results, 1),
        top5=_top_k(made.results, 5),
        chance_top1=1 / num_classes,
        chance_top5=min(5, num_classes) / num_classes,
        num_embedded=made.num_embedded,
        data_reused=data_reused,
        seconds={k: round(v, 2) for k, v in seconds.items()},
        search=made.search,
    )


def run_demo(
    out_dir: str | Path,
    *,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    settings: DemoSettings | None = None,
    announce: Announce | None = None,
) -> DemoReport:
    """Run the demo into ``out_dir`` and return what it measured.

    ``settings`` replaces the size chosen by ``quick`` (for experiments with other sizes or recipes). ``announce`` gets
    one line as each stage starts.
    """
    started = time.perf_counter()
    from clipctl.search.deps import require

    require(what="the demo (it ends with a search)")
    settings = settings or settings_for(quick)
    out = Path(out_dir)
    model, image_size = _recipe_model(settings)
    parameters = _parameters(settings, seed, model, image_size)
    needed = estimate_disk_bytes(settings, image_size, _count_params(model))
    check_demo_disk_space(out, needed)
    reuse = prepare_demo_dir(out, parameters, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, {"parameters": parameters, "status": "running"})

    clock = _StageClock(announce)
    made = _run_stages(out, settings, seed, model, image_size, clock)
    clock.seconds["total"] = time.perf_counter() - started
    report = _report(
        out,
        quick,
        seed,
        settings,
        model,
        made,
        data_reused=bool(reuse and made.data.reused),
        seconds=clock.seconds,
    )
    write_manifest(out, {"parameters": parameters, "status": "done", "report": report.to_dict()})
    return report


def _processes() -> int:
    from clipctl.runtime import available_cores

    return max(1, min(available_cores(), 4))


def load_report(out_dir: str | Path) -> dict[str, Any] | None:
    """The report saved by a finished demo in ``out_dir``, or None."""
    manifest = read_manifest(Path(out_dir))
    if manifest is None or manifest.get("status") != "done":
        return None
    return manifest.get("report")


def chance_ratio(accuracy: float, chance: float) -> float:
    return accuracy / chance if chance > 0 else math.inf
