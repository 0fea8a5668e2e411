"""Batches of decoded images for the DataLoader, and the encoder that turns them into embeddings.

A batch is formed and decoded inside a worker process; an image that fails to decode is dropped from its
batch and reported with the reason, never fatal. On a CPU the worker may also run the encoder (see
``job.py``: one model replica per core beats two processes fighting over the same cores).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from clipctl.embed.sources import ImageItem, is_image_name, shard_sample_key

Preprocess = Callable[[Image.Image], torch.Tensor]


class Encoder:
    """Model + precision + normalisation: pixels in, float32 embeddings out."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        input_dtype: torch.dtype | None,
        device: torch.device,
        normalize: bool,
    ):
        self.model = model
        self.input_dtype = input_dtype
        self.device = device
        self.normalize = normalize

    @torch.inference_mode()
    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.model.encode_image(pixels.to(self.device, self.input_dtype))
        return self._finish(features)

    @torch.inference_mode()
    def texts(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._finish(self.model.encode_text(tokens.to(self.device)))

    def _finish(self, features: torch.Tensor) -> torch.Tensor:
        # Normalise in float32: a bf16 norm would throw away what the bf16 weights kept.
        features = features.float()
        if self.normalize:
            features = features / features.norm(dim=-1, keepdim=True)
        return features.cpu()


def decode_image(source: Any, preprocess: Preprocess, draft_size: tuple[int, int] | None) -> torch.Tensor:
    """Open (a path or a file object) and preprocess one image. ``draft_size`` (width, height) lets libjpeg
    decode at 1/2, 1/4 or 1/8 scale, never below that size: much cheaper, slightly different pixels."""
    with Image.open(source) as image:
        if draft_size is not None and image.format == "JPEG" and image.mode in ("RGB", "L"):
            image.draft(image.mode, draft_size)
        return preprocess(image)


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "unreadable"
    return f"{type(err).__name__}: {text}"


def _finish_batch(
    keys: list, tensors: list[torch.Tensor], errors: list, encoder: Encoder | None
) -> dict[str, Any]:
    batch: dict[str, Any] = {"keys": keys, "errors": errors}
    if not tensors:
        batch["embeddings"] = None
    elif encoder is not None:
        batch["embeddings"] = encoder.images(torch.stack(tensors))
    else:
        batch["pixels"] = torch.stack(tensors)
    return batch


class FileBatches(Dataset):
    """Map-style: element ``i`` is the ``i``-th batch of image files, decoded (and encoded if ``encoder``)."""

    def __init__(
        self,
        items: list[ImageItem],
        batch_size: int,
        preprocess: Preprocess,
        draft_size: tuple[int, int] | None = None,
        encoder: Encoder | None = None,
    ):
        self.items = items
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.draft_size = draft_size
        self.encoder = encoder

    def __len__(self) -> int:
        return (len(self.items) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int) -> dict[str, Any]:
        chunk = self.items[index * self.batch_size : (index + 1) * self.batch_size]
        keys, tensors, errors = [], [], []
        for item in chunk:
            try:
                tensors.append(decode_image(item.location, self.preprocess, self.draft_size))
            except Exception as err:  # noqa: BLE001 - any undecodable file is reported, not fatal
                errors.append((item.location, _describe(err)))
                continue
            keys.append(item.key)
        return _finish_batch(keys, tensors, errors, self.encoder)


class ShardBatches(IterableDataset):
    """Webdataset tar shards, split across workers shard by shard; keys in ``skip`` are not decoded."""

    def __init__(
        self,
        shards: list[str],
        batch_size: int,
        preprocess: Preprocess,
        draft_size: tuple[int, int] | None = None,
        encoder: Encoder | None = None,
        skip: set[str] | frozenset[str] = frozenset(),
    ):
        self.shards = shards
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.draft_size = draft_size
        self.encoder = encoder
        self.skip = skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is None:
            for shard in self.shards:
                yield from self._shard_batches(shard, 0, 1)
        elif len(self.shards) >= info.num_workers:
            for shard in self.shards[info.id :: info.num_workers]:
                yield from self._shard_batches(shard, 0, 1)
        else:
            # Fewer shards than workers: every worker reads every shard (cheap) and decodes its share of samples.
            for shard in self.shards:
                yield from self._shard_batches(shard, info.id, info.num_workers)

    def _shard_batches(self, shard: str, part: int, parts: int) -> Iterator[dict[str, Any]]:
        keys, tensors, errors = [], [], []
        seen: set[str] = set()
        try:
            with tarfile.open(shard, "r|*") as tar:
                for member in tar:
                    if not member.isfile() or not is_image_name(member.name):
                        continue
                    key, _ = shard_sample_key(member.name)
                    if key in seen:  # one image per sample, as webdataset reads it
                        continue
                    seen.add(key)
                    if key in self.skip or (len(seen) - 1) % parts != part:
                        continue
                    try:
                        data = tar.extractfile(member).read()  # type: ignore[union-attr]
                        tensors.append(decode_image(io.BytesIO(data), self.preprocess, self.draft_size))
                    except Exception as err:  # noqa: BLE001 - any undecodable sample is reported, not fatal
                        errors.append((f"{shard}:{member.name}", _describe(err)))
                        continue
                    keys.append(key)
                    if len(keys) == self.batch_size:
                        yield _finish_batch(keys, tensors, errors, self.encoder)
                        keys, tensors, errors = [], [], []
        except (tarfile.TarError, OSError, EOFError) as err:
            if part == 0:  # every worker reading this shard hits it; one reports it
                errors.append((shard, f"unreadable shard after {len(seen)} samples: {_describe(err)}"))
        if keys or errors:
            yield _finish_batch(keys, tensors, errors, self.encoder)
