"""Map-style image-text data: CSV/TSV tables of image paths and captions (read by ``clipctl.data.csv_table``),
class folders captioned by templates (``--dataset-type imagefolder``), and the synthetic smoke-test set.

Sources with class labels (a CSV with ``--csv-label-key``, class folders) give ``(image, tokens, label)``
samples, the others ``(image, tokens)``; a label is an integer, ``-1`` where a CSV cell is empty.

Training draws batches from :class:`EpochBatchSampler`, a deterministic per-epoch permutation split across ranks
(like ``DistributedSampler``, padded so every rank gets the same number of full batches). A corrupt or missing
image is skipped and counted, and in training it is replaced by the next readable row, so every batch keeps
its size on every rank (distributed losses gather equal-sized batches). Evaluation drops it instead, giving a
smaller batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from clipctl.data.csv_table import CsvTable
from clipctl.errors import RunFailure
from clipctl.eval.zeroshot import render_prompts
from clipctl.train.data_common import SharedEpoch, SkipCounter, mix_seed, seeded_call
from clipctl.train.pixels import accepts_arrays, read_rgb

log = logging.getLogger("clipctl.train.data")

MAX_REPLACEMENT_TRIES = 64
NO_LABEL = -1
_TEMPLATE_SALT = (
    7  # mix_seed salt: the template choice is independent of the augmentation drawn from the seed
)


def label_ids(values: list[str]) -> list[int]:
    """Integer labels for a label column: equal texts get equal ids, an empty cell gets ``NO_LABEL``."""
    index = {name: i for i, name in enumerate(sorted({v for v in values if v}))}
    return [index[v] if v else NO_LABEL for v in values]


# ---- item sources: load(row, seed, as_array) -> (PIL image or HWC uint8 array, caption); labels: one int per row, or None ----
class CsvItems:
    def __init__(self, table: CsvTable):
        self.table = table
        self.labels = label_ids(table.labels) if table.labels is not None else None

    def __len__(self) -> int:
        return len(self.table)

    def load(
        self, index: int, seed: int | None = None, as_array: bool = False
    ) -> tuple[Image.Image | np.ndarray, str]:
        return read_rgb(self.table.image_paths[index], as_array), self.table.captions[index]

    def describe(self, index: int) -> str:
        return self.table.image_paths[index]


_COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "purple": (140, 50, 170),
    "orange": (240, 140, 30),
    "white": (240, 240, 240),
    "black": (15, 15, 15),
}
_OBJECTS = ("square", "blob", "scene", "pattern", "texture")


class ImageFolderItems:
    """Class folders as image-caption pairs: a sample's caption is one of ``templates`` filled with its class
    name, drawn from the sample's seed (so it changes from epoch to epoch, the same in every run with the same
    seed); its label is the class index."""

    def __init__(self, samples: list[tuple[str, int]], classnames: list[str], templates: list[str]):
        self.paths = [path for path, _ in samples]
        self.labels = [label for _, label in samples]
        self.classnames, self.templates = classnames, templates

    def __len__(self) -> int:
        return len(self.paths)

    def caption(self, index: int, seed: int | None) -> str:
        choice = 0 if seed is None else mix_seed(seed, _TEMPLATE_SALT) % len(self.templates)
        return render_prompts([self.classnames[self.labels[index]]], [self.templates[choice]])[0]

    def load(
        self, index: int, seed: int | None = None, as_array: bool = False
    ) -> tuple[Image.Image | np.ndarray, str]:
        return read_rgb(self.paths[index], as_array), self.caption(index, seed)

    def describe(self, index: int) -> str:
        return self.paths[index]


class SyntheticItems:
    """Noisy solid-colour images whose caption names the colour, so a smoke run has something to learn."""

    labels = None

    def __init__(self, num_samples: int, image_size: tuple[int, int], seed: int = 0):
        self.num_samples, self.image_size, self.seed = num_samples, image_size, seed

    def __len__(self) -> int:
        return self.num_samples

    def load(
        self, index: int, seed: int | None = None, as_array: bool = False
    ) -> tuple[Image.Image | np.ndarray, str]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, index))
        names = list(_COLORS)
        color = names[int(torch.randint(len(names), (1,), generator=g))]
        obj = _OBJECTS[int(torch.randint(len(_OBJECTS), (1,), generator=g))]
        h, w = self.image_size
        base = torch.tensor(_COLORS[color], dtype=torch.int16).view(1, 1, 3)
        noise = torch.randint(-30, 31, (h, w, 3), generator=g, dtype=torch.int16)
        pixels = (base + noise).clamp(0, 255).to(torch.uint8).numpy()
        return Image.fromarray(pixels, "RGB"), f"a photo of a {color} {obj}"

    def describe(self, index: int) -> str:
        return f"synthetic #{index}"


# ---- dataset + sampler ----
class ImageTextDataset(torch.utils.data.Dataset):
    """Preprocessed (image, tokens) pairs, or (image, tokens, label) triples, from an item source.

    Indices may be ``(row, seed)`` pairs from :class:`EpochBatchSampler`; the seed fixes that sample's
    augmentation. With ``replace_corrupt`` an unreadable row is replaced by the next readable one; otherwise
    ``None`` is returned and :func:`collate_skipping_none` drops it.
    """

    def __init__(
        self,
        items: CsvItems | ImageFolderItems | SyntheticItems,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        counter: SkipCounter | None = None,
        replace_corrupt: bool = True,
    ):
        self.items, self.preprocess, self.tokenizer = items, preprocess, tokenizer
        self.counter = counter or SkipCounter(0)
        self.replace_corrupt = replace_corrupt
        self.as_array = accepts_arrays(preprocess)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, ...] | None:
        index, seed = item if isinstance(item, tuple) else (item, None)
        tries = MAX_REPLACEMENT_TRIES if self.replace_corrupt else 1
        for attempt in range(tries):
            row = (index + attempt) % len(self.items)
            try:
                image, caption = self.items.load(row, seed, self.as_array)
                break
            except Exception as exc:  # noqa: BLE001 - any failure to read one image skips that image only
                self.counter.add(f"cannot read image {self.items.describe(row)}: {exc}")
        else:
            if not self.replace_corrupt:
                return None
            raise RunFailure(
                f"{MAX_REPLACEMENT_TRIES} images in a row could not be read, starting at "
                f"{self.items.describe(index)}; check the image paths and files"
            )
        pixels = self.preprocess(image) if seed is None else seeded_call(self.preprocess, image, seed)
        tokens = self.tokenizer([str(caption)])[0]
        labels = self.items.labels
        return (pixels, tokens) if labels is None else (pixels, tokens, labels[row])


def collate_skipping_none(batch: list[Any]) -> Any:
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return torch.utils.data.default_collate(kept)


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(row, seed)`` for one rank: a permutation fixed by (seed, epoch), padded to divide evenly
    among ranks, cut into full batches; in ``resume_epoch`` it starts at batch ``skip_batches``."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        seed: int,
        shared_epoch: SharedEpoch,
        rank: int = 0,
        world_size: int = 1,
        resume_epoch: int = -1,
        skip_batches: int = 0,
    ):
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.shared_epoch = seed, shared_epoch
        self.rank, self.world_size = rank, world_size
        self.resume_epoch, self.skip_batches = resume_epoch, skip_batches
        self.per_rank = -(-num_items // world_size)
        self.num_batches = self.per_rank // batch_size

    def set_epoch(self, epoch: int) -> None:
        self.shared_epoch.set(epoch)

    def start_batch(self, epoch: int | None = None) -> int:
        epoch = self.shared_epoch.get() if epoch is None else epoch
        return min(self.skip_batches, self.num_batches) if epoch == self.resume_epoch else 0

    def __len__(self) -> int:
        return self.num_batches - self.start_batch()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.shared_epoch.get()
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.num_items, generator=g).tolist()
        total = self.per_rank * self.world_size
        order += order[: total - len(order)]  # pad by wrapping, as DistributedSampler does
        mine = order[self.rank : total : self.world_size]
        for b in range(self.start_batch(epoch), self.num_batches):
            rows = mine[b * self.batch_size : (b + 1) * self.batch_size]
            first = b * self.batch_size
            yield [(row, mix_seed(self.seed, epoch, self.rank, first + i)) for i, row in enumerate(rows)]
