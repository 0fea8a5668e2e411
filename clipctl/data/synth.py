"""`clipctl data synth`: a generated image-caption dataset that a tiny CLIP learns in minutes on a CPU.

Layout of the output folder::

    00000.tar ... 00000_stats.json 00000.parquet ...   training shards, img2dataset layout
    sizes.json                                          tar basename -> sample count
    heldout/<colour>_<shape>/0000.png ...               held-out split, ImageFolder layout
    classnames.txt                                      one class per line, in the sorted folder order
    templates.txt                                       zero-shot prompt templates, one per line, with {c}
    synth.json                                          the parameters; written last, so it marks completion

Each image is drawn from its own random generator seeded with (seed, split, index), so the output is
byte-identical for a given seed whatever the number of processes.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa

from clipctl import fileio
from clipctl.data.outdir import check_free_space, prepare_output_dir
from clipctl.data.shards import Sample, ShardWriter, shard_name, write_json_atomic, write_sizes
from clipctl.data.synth_shapes import COLOURS, SHAPES, caption_for, class_name, draw_scene
from clipctl.errors import ClipctlError, RunFailure

MANIFEST = "synth.json"
HELDOUT_DIR = "heldout"
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "templates.txt"
GENERATOR_VERSION = 1
TEMPLATES = (
    "a photo of the {c}.",
    "the {c}.",
    "a picture of the {c}.",
    "a drawing of the {c}.",
    "the {c} on a plain background.",
    "{c}",
)
JPEG_QUALITY = 95  # img2dataset's default encode quality
_SPLIT_TRAIN, _SPLIT_HELDOUT, _SPLIT_ORDER = 0, 1, 2


@dataclass
class SynthSummary:
    """Where everything went. ``train_shards`` is a brace spec for ``--train-data``."""

    out_dir: str
    train_shards: str
    num_train: int
    num_shards: int
    heldout_dir: str
    num_heldout: int
    classnames: list[str]
    classnames_file: str
    templates_file: str
    image_size: int
    seed: int
    reused: bool = False
    class_counts: dict[str, int] = field(default_factory=dict)


def class_folders() -> list[tuple[str, str, str]]:
    """(folder name, colour, shape) in sorted folder order, which is the classnames order."""
    return sorted((f"{colour}_{shape}", colour, shape) for colour in COLOURS for shape in SHAPES)


def _train_labels(seed: int, num_train: int, num_classes: int) -> np.ndarray:
    """Every class equally often (to within one), in a seeded random order."""
    labels = np.arange(num_train) % num_classes
    return np.random.default_rng([seed, _SPLIT_ORDER]).permutation(labels)


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _write_train_shard(
    out_dir: str,
    shard_id: int,
    first: int,
    labels: list[int],
    seed: int,
    image_size: int,
    samples_per_shard: int,
) -> dict[str, int]:
    classes = class_folders()
    extra = {"label": pa.int32(), "classname": pa.string()}
    counts: dict[str, int] = {}
    with ShardWriter(out_dir, shard_id, samples_per_shard, extra_columns=extra) as writer:
        for index, label in enumerate(labels):
            rng = np.random.default_rng([seed, _SPLIT_TRAIN, first + index])
            _, colour, shape = classes[label]
            image, scene = draw_scene(rng, image_size, colour, shape)
            name = class_name(colour, shape)
            counts[name] = counts.get(name, 0) + 1
            writer.add(
                Sample(
                    index=index,
                    caption=caption_for(rng, scene),
                    image=_jpeg(image),
                    image_ext="jpg",
                    width=image_size,
                    height=image_size,
                    original_width=image_size,
                    original_height=image_size,
                    extra={"label": label, "classname": name},
                )
            )
    return counts


def _write_heldout_class(out_dir: str, label: int, count: int, seed: int, image_size: int) -> None:
    folder, colour, shape = class_folders()[label]
    target = Path(out_dir) / HELDOUT_DIR / folder
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng([seed, _SPLIT_HELDOUT, label, i])
        image, _ = draw_scene(rng, image_size, colour, shape)
        path = target / f"{i:04d}.png"
        fileio.write_with(path, lambda tmp, image=image: image.save(tmp, format="PNG"))


def _estimate_bytes(num_train: int, num_heldout: int, image_size: int) -> int:
    pixels = image_size * image_size
    per_train = 3 * 1024 + int(0.5 * pixels)  # tar headers and padding, json, jpeg at quality 95
    per_heldout = 4096 + 3 * pixels  # png of a noisy background barely compresses
    return int(1.2 * (num_train * per_train + num_heldout * per_heldout)) + (1 << 20)


def _parameters(
    seed: int, num_train: int, num_heldout_per_class: int, image_size: int, samples_per_shard: int
) -> dict:
    return {
        "generator": "clipctl.data.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_heldout_per_class": num_heldout_per_class,
        "image_size": image_size,
        "samples_per_shard": samples_per_shard,
    }


def _validate(
    num_train: int, num_heldout_per_class: int, image_size: int, samples_per_shard: int, processes: int
) -> None:
    if num_train < 1:
        raise ClipctlError(f"--num-train must be at least 1, got {num_train}")
    if num_heldout_per_class < 1:
        raise ClipctlError(f"--num-heldout-per-class must be at least 1, got {num_heldout_per_class}")
    if not 16 <= image_size <= 1024:
        raise ClipctlError(f"--image-size must be between 16 and 1024, got {image_size}")
    if samples_per_shard < 1:
        raise ClipctlError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    if processes < 1:
        raise ClipctlError(f"--processes must be at least 1, got {processes}")


def _read_manifest(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def synthesize_dataset(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    num_train: int = 10_000,
    num_heldout_per_class: int = 20,
    image_size: int = 64,
    samples_per_shard: int = 1000,
    processes: int = 1,
    overwrite: bool = False,
) -> SynthSummary:
    """Generate the shapes dataset into ``out_dir`` (see the module docstring for the layout).

    A folder already holding the same dataset (same parameters) is left as it is (``reused=True``); one
    holding anything else is refused unless ``overwrite``.
    """
    _validate(num_train, num_heldout_per_class, image_size, samples_per_shard, processes)
    out = Path(out_dir)
    params = _parameters(seed, num_train, num_heldout_per_class, image_size, samples_per_shard)
    manifest = _read_manifest(out) if out.is_dir() else None
    if manifest is not None and manifest.get("parameters") == params:
        return _summary(out, params, manifest["num_shards"], manifest["class_counts"], reused=True)

    classes = class_folders()
    check_free_space(
        out, _estimate_bytes(num_train, num_heldout_per_class * len(classes), image_size), "the dataset"
    )
    own = (MANIFEST, HELDOUT_DIR, CLASSNAMES_FILE, TEMPLATES_FILE)
    hint = "it holds a different synthetic dataset or other files; pass --overwrite to replace it"
    prepare_output_dir(out, overwrite=overwrite, own_patterns=[p.replace(".", r"\.") for p in own], hint=hint)
    # A half-written earlier run must not look complete.
    (out / MANIFEST).unlink(missing_ok=True)

    labels = _train_labels(seed, num_train, len(classes)).tolist()
    shard_jobs = [
        (
            str(out),
            shard_id,
            first,
            labels[first : first + samples_per_shard],
            seed,
            image_size,
            samples_per_shard,
        )
        for shard_id, first in enumerate(range(0, num_train, samples_per_shard))
    ]
    heldout_jobs = [
        (str(out), label, num_heldout_per_class, seed, image_size) for label in range(len(classes))
    ]
    class_counts: dict[str, int] = {}
    try:
        if processes == 1:
            shard_counts = [_write_train_shard(*job) for job in shard_jobs]
            for job in heldout_jobs:
                _write_heldout_class(*job)
        else:
            with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
                shard_futures = [pool.submit(_write_train_shard, *job) for job in shard_jobs]
                heldout_futures = [pool.submit(_write_heldout_class, *job) for job in heldout_jobs]
                shard_counts = [f.result() for f in shard_futures]
                for f in heldout_futures:
                    f.result()
    except BrokenProcessPool as err:
        raise RunFailure(f"a worker process died while writing {out}; rerun with --processes 1") from err
    except OSError as err:
        raise RunFailure(f"writing the dataset to {out} failed: {err}") from err
    for counts in shard_counts:
        for name, n in counts.items():
            class_counts[name] = class_counts.get(name, 0) + n

    sizes = {f"{shard_name(job[1])}.tar": len(job[3]) for job in shard_jobs}
    write_sizes(out, sizes)
    classnames = [class_name(colour, shape) for _, colour, shape in classes]
    fileio.write_text_atomic(out / CLASSNAMES_FILE, "".join(f"{name}\n" for name in classnames))
    fileio.write_text_atomic(out / TEMPLATES_FILE, "".join(f"{t}\n" for t in TEMPLATES))
    class_counts = dict(sorted(class_counts.items()))
    # Paths stay out of the manifest, so the same seed gives the same bytes in any folder.
    manifest = {"parameters": params, "num_shards": len(shard_jobs), "class_counts": class_counts}
    write_json_atomic(out / MANIFEST, manifest, indent=2)
    return _summary(out, params, len(shard_jobs), class_counts, reused=False)


def _summary(
    out: Path, params: dict, num_shards: int, class_counts: dict[str, int], reused: bool
) -> SynthSummary:
    last = num_shards - 1
    spec = f"{shard_name(0)}.tar" if last == 0 else f"{{{shard_name(0)}..{shard_name(last)}}}.tar"
    return SynthSummary(
        out_dir=str(out),
        train_shards=str(out / spec),
        num_train=params["num_train"],
        num_shards=num_shards,
        heldout_dir=str(out / HELDOUT_DIR),
        num_heldout=params["num_heldout_per_class"] * len(class_folders()),
        classnames=[class_name(colour, shape) for _, colour, shape in class_folders()],
        classnames_file=str(out / CLASSNAMES_FILE),
        templates_file=str(out / TEMPLATES_FILE),
        image_size=params["image_size"],
        seed=params["seed"],
        reused=reused,
        class_counts=class_counts,
    )
