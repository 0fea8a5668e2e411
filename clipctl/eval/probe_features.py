"""The features of one labelled dataset: what the cache holds is read, what it lacks is encoded (and added to
it), and the two are put together in dataset order.

The model is asked for (``get_model``) only when something is left to encode, so a fully cached dataset costs
no model load. Unreadable images are skipped and counted; they are tried again on the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from clipctl.errors import ClipctlError
from clipctl.eval.datasets import ShardStream, Unreadable, decode_rgb, describe_error
from clipctl.eval.feature_cache import FeatureStore
from clipctl.eval.labelled_data import LabelledItem, LabelledSource

MAX_LISTED_FAILURES = 20


@dataclass
class Features:
    """Features (float32, ``[n, dim]``) and labels of the readable images of one dataset, in dataset order."""

    features: torch.Tensor
    labels: torch.Tensor
    extracted: int  # encoded by this run
    cached: int  # read from the cache
    num_unreadable: int
    unreadable: list[tuple[str, str]]  # the first few (name, reason)
    keys: list[str] = field(default_factory=list)  # which image each row is (see labelled_data)


class KeyedImages(Dataset):
    """Map-style: ``(pixels, label, key)`` per image file, or :class:`Unreadable`."""

    def __init__(self, items: Sequence[LabelledItem], transform: Callable[[Any], torch.Tensor]):
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        item = self.items[index]
        try:
            return self.transform(decode_rgb(item.location)), item.label, item.key
        except Exception as err:  # noqa: BLE001 - any decode/transform failure makes this one image unusable
            return Unreadable(item.key, describe_error(err))


class KeyedShardSamples(ShardStream):
    """CLIP_benchmark samples (image + ``.cls``) as ``(pixels, label, key)``; keys in ``skip`` are not decoded."""

    def __init__(self, shards: Sequence[str], transform: Callable[[Any], torch.Tensor], skip: set[str]):
        super().__init__(shards, transform)
        self.skip = skip

    def convert(self, sample: dict[str, Any], name: str) -> Any:
        if name in self.skip:
            return None
        try:
            label = int(sample["cls"].decode("utf-8").strip())
        except (KeyError, UnicodeDecodeError, ValueError):
            return Unreadable(name, "no integer .cls label")
        image = self._image(sample, name)
        return image if isinstance(image, Unreadable) else (image, label, name)


def collate_keyed(batch: Sequence[Any]) -> dict[str, Any]:
    good = [item for item in batch if item is not None and not isinstance(item, Unreadable)]
    return {
        "images": torch.stack([item[0] for item in good]) if good else None,
        "labels": [int(item[1]) for item in good],
        "keys": [item[2] for item in good],
        "failures": [(item.name, item.reason) for item in batch if isinstance(item, Unreadable)],
    }


@dataclass
class ExtractionSettings:
    batch_size: int
    workers: int | None
    progress: bool


def _encode_pending(
    dataset: Any, count: int | None, store: FeatureStore, loaded: Any, settings: ExtractionSettings, name: str
) -> tuple[int, list[tuple[str, str]]]:
    """Encode everything ``dataset`` yields into ``store``; ``(number encoded, (key, reason) of failures)``."""
    from clipctl.eval.classification import model_input_dtype
    from clipctl.eval.loading import make_loader
    from clipctl.runtime import autocast, progress_bar, resolve_workers

    workers = resolve_workers(settings.workers, count, settings.batch_size)
    if count is None:
        workers = min(workers, len(getattr(dataset, "shards", [])))
    loader = make_loader(
        dataset, batch_size=settings.batch_size, workers=workers, collate=collate_keyed, device=loaded.device
    )
    input_dtype, plan = model_input_dtype(loaded.model), loaded.precision
    encoded, failures = 0, []
    with progress_bar(settings.progress, count, f"features {name}") as advance:
        try:
            for batch in loader:
                failures.extend(batch["failures"])
                if batch["images"] is not None:
                    with torch.inference_mode(), autocast(plan, loaded.device):
                        pixels = batch["images"].to(loaded.device, input_dtype)
                        features = loaded.model.encode_image(pixels, normalize=True)
                    store.add(batch["keys"], features.float().cpu().numpy(), batch["labels"])
                    encoded += len(batch["keys"])
                advance(len(batch["keys"]) + len(batch["failures"]))
        except BaseException:
            store.flush()  # keep every finished batch for the next run
            raise
    return encoded, failures


def source_features(
    source: LabelledSource, store: FeatureStore, get_model: Callable[[], Any], settings: ExtractionSettings
) -> Features:
    """The features of every readable image of ``source`` (cached ones read, the others encoded and cached).

    Images found unreadable are remembered beside the cache, so a later run neither retries them nor loads the
    model for them (a replaced file has a new key and is tried again)."""
    done, meta = store.done_keys(), store.read_meta()
    known_bad: dict[str, str] = meta["unreadable"]
    encoded, failures = 0, []
    if source.kind == "clip_benchmark":
        # which samples are cached is only known by reading the shards: stream them unless a pass completed
        if not meta["complete"]:
            loaded = get_model()
            dataset = KeyedShardSamples(source.shards, loaded.preprocess, done | set(known_bad))
            encoded, failures = _encode_pending(dataset, None, store, loaded, settings, source.name)
            meta["complete"] = True
    else:
        pending = [item for item in source.items if item.key not in done and item.key not in known_bad]
        if pending:
            loaded = get_model()
            dataset = KeyedImages(pending, loaded.preprocess)
            encoded, failures = _encode_pending(dataset, len(pending), store, loaded, settings, source.name)
    if failures or meta["complete"]:
        known_bad.update(failures)
        store.write_meta(meta)
    return _assemble(source, store.rows(), encoded, known_bad)


def _shown(key: str) -> str:
    return key.rsplit("|", 2)[0] if key.count("|") >= 2 else key


def _assemble(
    source: LabelledSource, rows: dict[str, tuple[np.ndarray, int]], encoded: int, known_bad: dict[str, str]
) -> Features:
    if source.kind == "clip_benchmark":
        keys = sorted(rows)
        labels = [rows[k][1] for k in keys]
        bad = sorted(known_bad.items())
    else:
        keys = [item.key for item in source.items if item.key in rows]
        labels = [item.label for item in source.items if item.key in rows]
        bad = [(item.key, known_bad[item.key]) for item in source.items if item.key in known_bad]
    if not keys:
        detail = (
            f": all {len(bad)} image(s) were unreadable (first: {_shown(bad[0][0])}: {bad[0][1]})"
            if bad
            else ""
        )
        raise ClipctlError(f"no image of {source.path} could be used{detail}")
    features = torch.from_numpy(np.stack([rows[k][0] for k in keys]).astype(np.float32))
    shown = [(_shown(k), reason) for k, reason in bad[:MAX_LISTED_FAILURES]]
    labels_tensor = torch.tensor(labels, dtype=torch.long)
    return Features(features, labels_tensor, encoded, len(keys) - encoded, len(bad), shown, keys)
