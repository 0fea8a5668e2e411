"""Queries embedded the way the index's rows were: the model, pretrained weights and precision the index
records, through the same encoder `clipctl embed` uses, so a query and the row it should find are computed
by the same code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from clipctl.errors import ClipctlError
from clipctl.search.batching import MicroBatcher

MAX_QUERY_PIXELS = 40_000_000  # an upload larger than this is refused before it is decoded


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


def choose_weights(manifest: dict[str, Any], model: str | None, pretrained: str | None) -> tuple[str, str]:
    """The model and weights to embed queries with: what the index records, or overrides that name the same
    model (a config file for a model recorded by name) and, only when the recorded weights file has gone,
    other weights."""
    from clipctl.config.resolver import resolve_model

    recorded_model = manifest.get("model") or ""
    recorded_weights = manifest.get("weights_file") or manifest.get("pretrained") or ""
    if not recorded_model and not model:
        raise ClipctlError(
            "the index does not record which model made its embeddings; pass --model and --pretrained "
            "(or rebuild it with them), or query with vectors"
        )
    if not recorded_weights and not pretrained:
        raise ClipctlError(
            "the index's embeddings were made with randomly initialised weights, which cannot be loaded again "
            "to embed a query; re-embed with --pretrained"
        )
    chosen_model = model or recorded_model
    if model and recorded_model and resolve_model(model).name != recorded_model:
        raise ClipctlError(
            f"the index holds embeddings of {recorded_model}; --model {model} is another model (rebuild the index)"
        )
    if pretrained and recorded_weights and pretrained not in (recorded_weights, manifest.get("pretrained")):
        if not (_looks_like_path(recorded_weights) and not Path(recorded_weights).exists()):
            raise ClipctlError(
                f"the index holds embeddings made with weights {recorded_weights}; --pretrained {pretrained} "
                "differs (it is only for weights files that have moved)"
            )
    weights = pretrained or recorded_weights
    if not pretrained and _looks_like_path(weights) and not Path(weights).expanduser().exists():
        raise ClipctlError(
            f"the index's weights file {weights} is gone; pass --pretrained with where it is now"
        )
    return chosen_model, weights


class QueryEncoder:
    """Text and image queries -> unit float32 vectors of the index's dimension. Thread-safe: concurrent
    queries are batched into shared model calls (see ``batching.py``) rather than fighting over the cores."""

    def __init__(
        self,
        manifest: dict[str, Any],
        *,
        device: str = "cpu",
        model: str | None = None,
        pretrained: str | None = None,
        precision: str | None = None,
    ):
        from clipctl.api import get_tokenizer
        from clipctl.embed.job import load_encoder
        from clipctl.runtime import CAST_PRECISIONS, parse_device, plan_precision

        model_name, weights = choose_weights(manifest, model, pretrained)
        torch_device = parse_device(device)
        # the precision the rows were embedded with (fp16 on a CPU is refused with the usual message)
        plan = plan_precision(
            precision or manifest.get("precision") or "fp32", torch_device, choices=CAST_PRECISIONS
        )
        self.encoder, self.preprocess, _ = load_encoder(model_name, weights, plan, torch_device, True)
        self.tokenizer = get_tokenizer(model_name)
        self.model_name = model_name
        self.dim = int(manifest["dim"])
        self._texts = MicroBatcher(self._encode_texts)
        self._images = MicroBatcher(self._encode_images)
        found = self.texts([""]).shape[1]
        if found != self.dim:
            raise ClipctlError(
                f"{model_name} makes {found}-dimensional embeddings; the index holds {self.dim}"
            )

    def texts(self, texts: list[str]) -> np.ndarray:
        return np.stack(self._texts.map(list(self.tokenizer(list(texts)))))

    def images(self, images: list[Any]) -> np.ndarray:
        """PIL images (or paths), preprocessed exactly as `clipctl embed` preprocesses the files it reads."""
        return np.stack(self._images.map([self.preprocess(_as_image(image)) for image in images]))

    def _encode_texts(self, tokens: list[Any]) -> list[np.ndarray]:
        import torch

        return list(self.encoder.texts(torch.stack(tokens)).numpy())

    def _encode_images(self, pixels: list[Any]) -> list[np.ndarray]:
        import torch

        return list(self.encoder.images(torch.stack(pixels)).numpy())


def _as_image(image: Any) -> Any:
    if isinstance(image, (str, os.PathLike)):
        try:
            data = Path(image).read_bytes()
        except OSError as err:
            raise ClipctlError(f"cannot read {image}: {err.strerror or err}") from None
        return load_image(data, str(image))
    return image


def load_image(data: bytes, what: str = "the image") -> Any:
    """Decode an image from bytes, refusing decompression bombs and non-images with one line."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > MAX_QUERY_PIXELS:
                raise ClipctlError(
                    f"{what} is {width}x{height} pixels; queries are limited to {MAX_QUERY_PIXELS:,} pixels"
                )
            probe.load()
            return probe.copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ClipctlError(f"{what} is not a readable image ({type(err).__name__})") from None
