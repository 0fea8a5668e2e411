"""`clipctl embed`: images (a folder, a list file, shards) or captions to embeddings, resumable.

How the work is laid out, and why:
- On a CPU, each DataLoader worker holds a copy of the model (shared copy-on-write after ``fork``) and decodes,
  preprocesses *and* encodes whole batches on its own cores. Two processes that each own a core keep both
  busy; a decoder process next to a two-thread encoder steals cycles from one of the encoder's threads and
  stalls the other at every barrier.
- On an accelerator, workers decode and preprocess; the main process encodes.
- The main process only writes: chunks of rows go to disk as they complete (see ``writer.py``), so memory
  stays flat in the number of images and a crash loses at most one chunk.
Embeddings do not depend on the batch they were computed in, so dropping unreadable images from a batch
leaves every other embedding bit-for-bit what the plain OpenCLIP loop computes.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clipctl import fileio
from clipctl.embed.batches import Encoder, FileBatches, ShardBatches
from clipctl.embed.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED
from clipctl.embed.sources import ImageItem, open_image_source, read_caption_lines
from clipctl.embed.writer import ClipRetrievalStore, EmbeddingStore, ParquetStore
from clipctl.errors import ClipctlError, RunFailure
from clipctl.runtime import (
    CAST_PRECISIONS,
    PrecisionPlan,
    available_cores,
    check_workers,
    parse_device,
    plan_precision,
    progress_bar,
    set_worker_threads,
)

FORMATS = ("parquet", "clip-retrieval")


@dataclass
class EmbedSummary:
    out: str
    modality: str  # "image" | "text"
    embedded: int  # rows added by this run
    skipped: int  # inputs already in the output (resume)
    failed: int  # unreadable inputs, listed in errors_path
    total_rows: int  # rows in the output after this run
    dim: int | None
    seconds: float  # the whole call, model loading included
    embed_seconds: float  # reading, encoding and writing only
    errors_path: str | None
    workers: int = 0
    encode_in_workers: bool = False

    @property
    def per_second(self) -> float:
        """Throughput once the model is loaded (what the progress bar shows)."""
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


def errors_path_for(out: str | os.PathLike) -> Path:
    """``OUT.errors.csv`` beside the output (a file or, for clip-retrieval's layout, a folder)."""
    out = Path(out)
    return out.with_name(out.name + ".errors.csv")


# -- model --------------------------------------------------------------------------------------------------


def _check_out(out: str | os.PathLike, fmt: str) -> Path:
    """The output path, refused before the model loads when it can never be written."""
    return fileio.check_output_target(out, kind="folder" if fmt == "clip-retrieval" else "file")


def _check_choices(fmt: str, batch_size: int) -> None:
    if fmt not in FORMATS:
        raise ClipctlError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise ClipctlError(f"--batch-size must be at least 1, got {batch_size}")


def _plan(device: str | torch.device, precision: str) -> tuple[torch.device, PrecisionPlan]:
    torch_device = parse_device(device)
    return torch_device, plan_precision(precision, torch_device, choices=CAST_PRECISIONS)


def load_encoder(
    model: str, pretrained: str | None, plan: PrecisionPlan, device: torch.device, normalize: bool
) -> tuple[Encoder, Any, dict[str, str]]:
    """The encoder, the evaluation transform and the settings recorded with the embeddings."""
    from clipctl.api import create_model_and_transforms

    net, _, preprocess = create_model_and_transforms(
        model, pretrained, precision=plan.model_precision, device=device
    )
    net.eval()
    encoder = Encoder(net, input_dtype=plan.input_dtype, device=device, normalize=normalize)
    settings = {
        "model": str(getattr(net, "clipctl_model_name", model)),
        "pretrained": str(getattr(net, "clipctl_pretrained", pretrained) or ""),
        "precision": plan.precision,
        "normalize": "true" if normalize else "false",
    }
    return encoder, preprocess, settings


def _draft_size(encoder: Encoder) -> tuple[int, int]:
    size = encoder.model.visual.preprocess_cfg.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return int(width), int(height)


# -- output -------------------------------------------------------------------------------------------------


def _open_store(
    out: Path, fmt: str, settings: dict[str, str], key_column: str, chunk_rows: int, chunk_seconds: float
) -> EmbeddingStore:
    import pyarrow as pa

    if fmt == "clip-retrieval":
        return ClipRetrievalStore(
            out, settings, key_column, chunk_rows=chunk_rows, chunk_seconds=chunk_seconds
        )
    if settings["modality"] == "text":
        return ParquetStore(
            out,
            settings,
            "line",
            pa.int64(),
            {"text": pa.string()},
            chunk_rows=chunk_rows,
            chunk_seconds=chunk_seconds,
        )
    return ParquetStore(
        out, settings, key_column, pa.string(), chunk_rows=chunk_rows, chunk_seconds=chunk_seconds
    )


def _write_errors(path: Path, errors: list[tuple[str, str]]) -> str | None:
    if not errors:
        if path.exists():
            path.unlink()  # a stale list from an earlier run would name files that are fine now
        return None
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["path", "reason"])
    writer.writerows(errors)
    fileio.write_text_atomic(path, text.getvalue())
    return str(path)


def _resolve_workers(
    workers: int | None, device: torch.device, encode_in_workers: bool | None
) -> tuple[int, bool]:
    check_workers(workers)
    if workers is None:
        workers = min(available_cores(), 8)
    fork_ok = sys.platform.startswith("linux")
    if encode_in_workers is None:
        encode_in_workers = device.type == "cpu" and fork_ok
    if device.type != "cpu" or not fork_ok:
        encode_in_workers = False  # a model on an accelerator stays in the process that owns it
    return workers, encode_in_workers and workers > 0


def _loader(
    dataset: Any, workers: int, encode_in_workers: bool, device: torch.device
) -> torch.utils.data.DataLoader:
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {"batch_size": None, "num_workers": workers}
    if workers:
        threads = max(1, available_cores() // workers) if encode_in_workers else 1
        kwargs.update(
            prefetch_factor=2,
            worker_init_fn=set_worker_threads(threads),
            # fork shares the model's weights with the workers instead of pickling a copy to each.
            multiprocessing_context=multiprocessing.get_context("fork") if encode_in_workers else None,
            pin_memory=device.type == "cuda",
        )
    return DataLoader(dataset, **kwargs)


# -- jobs ---------------------------------------------------------------------------------------------------


@dataclass
class EmbedOptions:
    """How to embed. ``model`` None means ViT-B-32 with its laion2b weights (unless ``pretrained`` is given);
    ``pretrained`` 'none' means random weights, None the weights the model name brings (none for a registry
    name). ``workers`` None: cores, at most 8;
    ``encode_in_workers`` None: on a CPU under Linux, each worker encodes whole batches (see the module doc).
    ``after_batch(n)`` is called after the n-th written batch (tests use it to interrupt a run); ``announce``
    gets warnings worth a line, such as bf16 on a CPU that emulates it."""

    model: str | None = None
    pretrained: str | None = None
    batch_size: int = 32
    workers: int | None = None
    device: str | torch.device = "cpu"
    precision: str = "fp32"
    normalize: bool = True
    fast_decode: bool = False
    format: str = "parquet"
    progress: bool = False
    chunk_rows: int = 4096
    chunk_seconds: float = 60.0
    encode_in_workers: bool | None = None
    after_batch: Callable[[int], None] | None = None
    announce: Callable[[str], None] | None = (
        None  # one-line warnings before the work starts (the CLI prints them)
    )

    def weights(self) -> tuple[str, str | None]:
        """(model, pretrained) with the defaults applied; 'none' is passed on for the resolver to read."""
        if self.model is None:
            return DEFAULT_MODEL, DEFAULT_PRETRAINED if self.pretrained is None else self.pretrained
        return self.model, self.pretrained

    def random_weights(self) -> bool:
        """Whether the model is built without weights: 'none', or a registry name with no ``pretrained``
        (an ``hf-hub:``/``local-dir:`` name brings its own weights)."""
        from clipctl.config.resolver import HF_HUB_PREFIX, LOCAL_DIR_PREFIX, no_weights_requested

        model, pretrained = self.weights()
        if pretrained is None:
            return not model.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX))
        return no_weights_requested(pretrained)


@dataclass
class _Run:
    """What both jobs set up before the first batch."""

    encoder: Encoder
    preprocess: Any
    settings: dict[str, str]
    device: torch.device
    started: float


def _start(options: EmbedOptions, modality: str, source: str, fast_decode: bool) -> _Run:
    _check_choices(options.format, options.batch_size)
    torch_device, plan = _plan(options.device, options.precision)
    if plan.note and options.announce is not None:
        options.announce(plan.note)
    started = time.perf_counter()
    model, pretrained = options.weights()
    encoder, preprocess, settings = load_encoder(model, pretrained, plan, torch_device, options.normalize)
    settings.update(modality=modality, fast_decode="true" if fast_decode else "false", source=source)
    return _Run(encoder, preprocess, settings, torch_device, started)


def _summary(
    run: _Run, out: Path, modality: str, counts: dict[str, Any], loop_started: float
) -> EmbedSummary:
    finished = time.perf_counter()
    return EmbedSummary(
        out=str(out),
        modality=modality,
        seconds=finished - run.started,
        embed_seconds=finished - loop_started,
        **counts,
    )


def _pending_images(source: Any, done: set, options: EmbedOptions, run: _Run, batch_encoder: Any) -> tuple:
    """(dataset of the images not yet in the output, how many there are or None, how many were skipped)."""
    draft = _draft_size(run.encoder) if options.fast_decode else None
    if source.kind == "shards":
        dataset: Any = ShardBatches(
            source.shards, options.batch_size, run.preprocess, draft, batch_encoder, skip=done
        )
        total = source.count_hint()
        return dataset, None if total is None else max(total - len(done), 0), len(done)
    # clip-retrieval's metadata names the file as it was read; Parquet stores the key (relative path).
    by_location = options.format == "clip-retrieval"
    pending = [item for item in source.items if (item.location if by_location else item.key) not in done]
    if by_location:
        pending = [ImageItem(item.location, item.location) for item in pending]
    dataset = FileBatches(pending, options.batch_size, run.preprocess, draft, batch_encoder)
    return dataset, len(pending), len(source.items) - len(pending)


def _write_batches(
    loader: Any,
    run: _Run,
    store: EmbeddingStore,
    options: EmbedOptions,
    advance: Callable[[int], None],
    errors: list[tuple[str, str]],
) -> tuple[int, int | None]:
    """Encode (unless the workers did) and store each batch; returns (rows written, dim). Unreadable inputs
    are appended to ``errors`` as they come, so that they are kept when the run is interrupted."""
    embedded, dim = 0, None
    for n_batches, batch in enumerate(loader, start=1):
        errors.extend(batch["errors"])
        embeddings = run.encoder.images(batch["pixels"]) if "pixels" in batch else batch.get("embeddings")
        if batch["keys"]:
            store.add(batch["keys"], embeddings.numpy(), {})
            embedded += len(batch["keys"])
            dim = int(embeddings.shape[1])
        advance(len(batch["keys"]) + len(batch["errors"]))
        if options.after_batch is not None:
            options.after_batch(n_batches)
    return embedded, dim


def embed_images(
    src: str | os.PathLike, out: str | os.PathLike, options: EmbedOptions | None = None
) -> EmbedSummary:
    """Embed every image of ``src`` into ``out``; images already in ``out`` are skipped (resume)."""
    options = options or EmbedOptions()
    source = open_image_source(src)
    out_path = _check_out(out, options.format)
    run = _start(options, "image", source.root, options.fast_decode)
    key_column = "image_path" if options.format == "clip-retrieval" else source.key_column
    store = _open_store(
        out_path, options.format, run.settings, key_column, options.chunk_rows, options.chunk_seconds
    )
    workers, in_workers = _resolve_workers(options.workers, run.device, options.encode_in_workers)
    batch_encoder = run.encoder if (in_workers or workers == 0) else None
    dataset, pending_count, skipped = _pending_images(source, store.done_keys(), options, run, batch_encoder)
    embedded, dim, errors = 0, None, []
    loop_started = time.perf_counter()
    if pending_count != 0:
        bar = progress_bar(options.progress, pending_count, "embedding", unit="images", transient=False)
        with bar as advance:
            try:
                loader = _loader(dataset, workers, in_workers, run.device)
                embedded, dim = _write_batches(loader, run, store, options, advance, errors)
            except BaseException:
                store.flush()  # keep every completed batch for the re-run
                _write_errors(errors_path_for(out_path), errors)
                raise
    errors_path = _write_errors(errors_path_for(out_path), errors)
    if embedded == 0 and skipped == 0 and errors:
        raise RunFailure(f"none of the {len(errors)} images could be read; reasons in {errors_path}")
    counts = dict(
        embedded=embedded, skipped=skipped, failed=len(errors), total_rows=store.finalize(), dim=dim
    )
    counts.update(errors_path=errors_path, workers=workers, encode_in_workers=in_workers)
    return _summary(run, out_path, "image", counts, loop_started)


def embed_texts(
    src: str | os.PathLike, out: str | os.PathLike, options: EmbedOptions | None = None
) -> EmbedSummary:
    """Embed each non-blank line of a text file; the output keys rows by line number (from 0)."""
    from clipctl.api import get_tokenizer

    options = options or EmbedOptions(batch_size=64)
    if options.fast_decode:
        raise ClipctlError("--fast-decode applies to images, not --text")
    captions = read_caption_lines(src)
    out_path = _check_out(out, options.format)
    run = _start(options, "text", str(Path(src).resolve()), False)
    tokenizer = get_tokenizer(options.weights()[0])
    store = _open_store(
        out_path, options.format, run.settings, "line", options.chunk_rows, options.chunk_seconds
    )
    done = store.done_keys()
    pending = [(line, text) for line, text in captions if line not in done]
    embedded, dim = 0, None
    loop_started = time.perf_counter()
    bar = progress_bar(
        options.progress and bool(pending), len(pending), "embedding", unit="texts", transient=False
    )
    with bar as advance:
        try:
            for n_batches, start in enumerate(range(0, len(pending), options.batch_size), start=1):
                chunk = pending[start : start + options.batch_size]
                embeddings = run.encoder.texts(tokenizer([text for _, text in chunk]))
                store.add(
                    [line for line, _ in chunk], embeddings.numpy(), {"text": [text for _, text in chunk]}
                )
                embedded, dim = embedded + len(chunk), int(embeddings.shape[1])
                advance(len(chunk))
                if options.after_batch is not None:
                    options.after_batch(n_batches)
        except BaseException:
            store.flush()
            raise
    counts = dict(
        embedded=embedded, skipped=len(captions) - len(pending), failed=0, dim=dim, errors_path=None
    )
    counts["total_rows"] = store.finalize()
    return _summary(run, out_path, "text", counts, loop_started)
