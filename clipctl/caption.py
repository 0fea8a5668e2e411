"""Caption images with a CoCa model: load, preprocess, ``model.generate``, decode with the model's tokenizer.

Generation itself lives in ``clipctl/models/coca.py`` and ``clipctl/models/generation.py``; this module is the
job behind ``clipctl caption``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipctl.errors import ClipctlError

if TYPE_CHECKING:
    from clipctl.config.resolver import ResolvedModel

GENERATION_TYPES = ("beam_search", "top_k", "top_p")
DEFAULT_MIN_LEN = 5


@dataclass
class Caption:
    path: str
    caption: str | None
    error: str | None = None


@dataclass
class CaptionOptions:
    generation_type: str = "beam_search"
    max_len: int = 30
    num_beams: int = 6
    num_beam_groups: int = 3
    top_k: int = 1
    top_p: float = 0.1
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None


def check_options(options: CaptionOptions) -> None:
    if options.generation_type not in GENERATION_TYPES:
        raise ClipctlError(
            f"unknown --generation-type {options.generation_type!r}; choose one of {', '.join(GENERATION_TYPES)}"
        )
    if options.max_len < 2:
        raise ClipctlError(f"--max-len must be at least 2 (got {options.max_len})")
    if options.generation_type == "beam_search":
        if (
            options.num_beams < 1
            or options.num_beam_groups < 1
            or options.num_beams % options.num_beam_groups
        ):
            raise ClipctlError(
                f"--num-beams ({options.num_beams}) must be a positive multiple of --num-beam-groups "
                f"({options.num_beam_groups})"
            )
    if options.top_k < 1:
        raise ClipctlError("--top-k must be at least 1")
    if not 0.0 < options.top_p <= 1.0:
        raise ClipctlError("--top-p must be in (0, 1]")
    if options.temperature <= 0:
        raise ClipctlError("--temperature must be positive")


def _special_ids(tokenizer: Any) -> tuple[int | None, int | None]:
    """Start and end ids of the tokenizer (CLIP BPE: 49406/49407; HF: bos/cls and eos/sep)."""
    sot = getattr(tokenizer, "sot_token_id", None)
    eot = getattr(tokenizer, "eot_token_id", None)
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None:
        sot = (
            sot
            if sot is not None
            else (inner.bos_token_id if inner.bos_token_id is not None else inner.cls_token_id)
        )
        eot = (
            eot
            if eot is not None
            else (inner.eos_token_id if inner.eos_token_id is not None else inner.sep_token_id)
        )
    return sot, eot


def decode_caption(tokenizer: Any, ids: Sequence[int], sot: int | None, eot: int | None) -> str:
    """Text of generated ids: the start token and everything from the end token on are dropped.

    Padding only ever follows the end token, so cutting there removes it; CLIP's pad id 0 is also the real
    token "!", so it must not be filtered anywhere else.
    """
    ids = [int(i) for i in ids]
    if ids and sot is not None and ids[0] == sot:
        ids = ids[1:]
    if eot is not None and eot in ids:
        ids = ids[: ids.index(eot)]
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "decode"):
        text = inner.decode(ids, skip_special_tokens=True)
    else:
        text = tokenizer.decode(ids)
    return " ".join(text.split())


def _check_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    if not paths:
        raise ClipctlError("no images given")
    files = [Path(p).expanduser() for p in paths]
    for path in files:
        if path.is_dir():
            raise ClipctlError(f"{path} is a folder; pass image files (e.g. {path}/*.jpg)")
        if not path.is_file():
            raise ClipctlError(f"image {path} does not exist")
    return files


def _check_can_caption(resolved: ResolvedModel, model_name: str, options: CaptionOptions) -> None:
    """Refuse, before any weights load, a model without a text decoder or weights, or a too long --max-len."""
    if "multimodal_cfg" not in resolved.model_cfg:
        raise ClipctlError(
            f"{model_name} is not a CoCa model, so it cannot caption (it has no text decoder); "
            "use a coca_* model, e.g. --model coca_ViT-B-32 --pretrained mscoco_finetuned_laion2b_s13b_b90k"
        )
    if resolved.weights is None:
        raise ClipctlError(
            f"{model_name} needs pretrained weights to caption: pass --pretrained TAG "
            f"(see `clipctl models show {resolved.name}`) or a checkpoint file"
        )
    context = int(resolved.model_cfg.get("text_cfg", {}).get("context_length", 77))
    if options.max_len > context:
        raise ClipctlError(f"--max-len {options.max_len} is longer than the model's text context ({context})")


@dataclass
class _Captioner:
    """A loaded CoCa model with its preprocessing, tokenizer and the generation settings of one job."""

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Any
    options: CaptionOptions
    device: str
    generator: Any = None

    def captions(self, tensors: list[Any]) -> list[str]:
        import torch

        sot, eot = _special_ids(self.tokenizer)
        options = self.options
        ids = self.model.generate(
            torch.stack(tensors).to(self.device),
            seq_len=options.max_len,
            generation_type=options.generation_type,
            min_seq_len=min(DEFAULT_MIN_LEN, options.max_len - 1),
            top_k=options.top_k,
            top_p=options.top_p,
            temperature=options.temperature,
            num_beams=options.num_beams,
            num_beam_groups=options.num_beam_groups,
            repetition_penalty=options.repetition_penalty,
            sot_token_id=sot,
            eos_token_id=eot,
            pad_token_id=getattr(self.model, "pad_id", 0),
            generator=self.generator,
        )
        return [decode_caption(self.tokenizer, row, sot, eot) for row in ids.tolist()]


def _load_captioner(
    model_name: str, pretrained: str | None, options: CaptionOptions, device: str, weights_only: bool
) -> _Captioner:
    import torch

    from clipctl.api import create_model_and_transforms, get_tokenizer
    from clipctl.config.resolver import resolve_model

    _check_can_caption(resolve_model(model_name, pretrained), model_name, options)
    # Random weights caption nothing meaningful: weights are required (a tag, a file, or a hub/local folder).
    model, _, preprocess = create_model_and_transforms(
        model_name, pretrained, device=device, weights_only=weights_only, require_pretrained=True
    )
    model.eval()
    captioner = _Captioner(model, preprocess, get_tokenizer(model_name), options, device)
    if options.seed is not None:
        captioner.generator = torch.Generator(device=device).manual_seed(options.seed)
        torch.manual_seed(options.seed)
    return captioner


def _read_images(
    files: Sequence[Path], preprocess: Callable[[Any], Any]
) -> tuple[list[Path], list, list[Caption]]:
    """The preprocessed images that could be read, their paths, and a failed :class:`Caption` for the others."""
    from PIL import Image, UnidentifiedImageError

    paths, tensors, failures = [], [], []
    for path in files:
        try:
            with Image.open(path) as image:
                tensors.append(preprocess(image))
            paths.append(path)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            reason = (
                "not an image" if isinstance(err, UnidentifiedImageError) else f"{type(err).__name__}: {err}"
            )
            failures.append(Caption(str(path), None, error=reason))
    return paths, tensors, failures


def caption_images(
    paths: Sequence[str | os.PathLike],
    model_name: str,
    pretrained: str | None = None,
    *,
    options: CaptionOptions | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    weights_only: bool = True,
    on_caption: Callable[[Caption], None] | None = None,
) -> list[Caption]:
    """Caption each image; unreadable images get ``error`` set instead of a caption (never fatal)."""
    options = options or CaptionOptions()
    check_options(options)
    if batch_size < 1:
        raise ClipctlError("--batch-size must be at least 1")
    files = _check_images(paths)
    captioner = _load_captioner(model_name, pretrained, options, device, weights_only)

    results: list[Caption] = []

    def emit(item: Caption) -> None:
        results.append(item)
        if on_caption is not None:
            on_caption(item)

    for start in range(0, len(files), batch_size):
        readable, tensors, failures = _read_images(files[start : start + batch_size], captioner.preprocess)
        for failure in failures:
            emit(failure)
        if tensors:
            for path, text in zip(readable, captioner.captions(tensors), strict=True):
                emit(Caption(str(path), text))
    return results
