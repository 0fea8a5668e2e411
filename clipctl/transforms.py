"""Image preprocessing: evaluation transforms identical to OpenCLIP's, and training augmentation.

Evaluation output must match OpenCLIP tensor for tensor, because pretrained weights were evaluated (and
trained) on exactly these pixels; every ordering quirk below is kept on purpose and says so.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    Grayscale,
    InterpolationMode,
    Normalize,
    RandomResizedCrop,
    Resize,
)

from clipctl.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from clipctl.errors import ClipctlError

RESIZE_MODES = ("shortest", "longest", "squash")
INTERPOLATIONS = ("bicubic", "bilinear", "random")
ImageSize = int | tuple[int, int]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ClipctlError(f"image size must be an int or (height, width), got {size!r}")
    return size  # type: ignore[return-value]


def _check_choice(kind: str, value: str, known: Sequence[str]) -> None:
    if value not in known:
        raise ClipctlError(f"unknown {kind} {value!r}; known: {', '.join(known)}")


@dataclass
class PreprocessCfg:
    """How images are turned into model input; stored per pretrained tag and in ``open_clip_config.json``."""

    size: ImageSize = 224
    mode: str = "RGB"
    mean: tuple[float, ...] = OPENAI_DATASET_MEAN
    std: tuple[float, ...] = OPENAI_DATASET_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    def __post_init__(self) -> None:
        _check_choice("image mode", self.mode, ("RGB",))
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("resize mode", self.resize_mode, RESIZE_MODES)

    @property
    def num_channels(self) -> int:
        return 3

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.num_channels, *_pair(self.size))


PREPROCESS_KEYS = tuple(f.name for f in fields(PreprocessCfg))


def merge_preprocess_dict(base: PreprocessCfg | Mapping[str, Any], overlay: Mapping[str, Any] | None) -> dict:
    """``base`` with the non-None preprocessing keys of ``overlay`` on top; other keys are dropped."""
    merged = (
        asdict(base)
        if isinstance(base, PreprocessCfg)
        else {k: v for k, v in base.items() if k in PREPROCESS_KEYS}
    )
    for key, value in (overlay or {}).items():
        if key in PREPROCESS_KEYS and value is not None:
            merged[key] = value
    return merged


@dataclass
class AugmentationCfg:
    """Training augmentation (the ``--aug-cfg`` settings)."""

    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] | None = None
    color_jitter: float | tuple[float, ...] | None = None
    re_prob: float | None = None
    re_count: int | None = None
    use_timm: bool = False
    color_jitter_prob: float | None = None
    gray_scale_prob: float | None = None

    def __post_init__(self) -> None:
        self.scale = _check_range("scale", self.scale)
        if self.ratio is not None:
            self.ratio = _check_range("ratio", self.ratio)
        if self.color_jitter is not None:
            self.color_jitter = _check_color_jitter(self.color_jitter)
        for name in ("re_prob", "color_jitter_prob", "gray_scale_prob"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
                raise ClipctlError(
                    f"augmentation setting {name} must be a probability in [0, 1], got {value!r}"
                )
        if self.re_count is not None and not (isinstance(self.re_count, int) and self.re_count >= 1):
            raise ClipctlError(f"augmentation setting re_count must be a positive int, got {self.re_count!r}")
        if not isinstance(self.use_timm, bool):
            raise ClipctlError(f"augmentation setting use_timm must be True or False, got {self.use_timm!r}")
        if self.color_jitter_prob is not None and self.color_jitter is None:
            raise ClipctlError(
                "augmentation setting color_jitter_prob needs color_jitter (the jitter strengths)"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AugmentationCfg:
        unknown = [k for k in values if k not in AUG_KEYS]
        if unknown:
            raise ClipctlError(f"unknown augmentation setting {unknown[0]!r}; known: {', '.join(AUG_KEYS)}")
        return cls(**values)


AUG_KEYS = tuple(f.name for f in fields(AugmentationCfg))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range(name: str, value: Any) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ClipctlError(
            f"augmentation setting {name} must be a pair of numbers like (0.9, 1.0), got {value!r}"
        )
    low, high = float(value[0]), float(value[1])
    if not 0 < low <= high:
        raise ClipctlError(f"augmentation setting {name} must satisfy 0 < low <= high, got {value!r}")
    return low, high


def _check_color_jitter(value: Any) -> float | tuple[float, ...]:
    if _is_number(value):
        return float(value)
    if isinstance(value, (list, tuple)) and len(value) in (3, 4) and all(_is_number(v) for v in value):
        return tuple(float(v) for v in value)
    raise ClipctlError(
        "augmentation setting color_jitter must be a number or (brightness, contrast, saturation[, hue]), "
        f"got {value!r}"
    )


def parse_aug_cfg(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``--aug-cfg`` items (``key=value``; values are Python literals, else plain strings)."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ClipctlError(
                f"malformed augmentation setting {item!r}; expected key=value, e.g. scale='(0.5, 1.0)'"
            )
        if key not in AUG_KEYS:
            raise ClipctlError(f"unknown augmentation setting {key!r}; known: {', '.join(AUG_KEYS)}")
        try:
            parsed[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed[key] = raw.strip()
    AugmentationCfg.from_dict(parsed)  # validate values now so the error names the flag, not a later step
    return parsed


class ResizeKeepRatio:
    """Resize so the shortest (or longest) edge meets the target, keeping the aspect ratio."""

    def __init__(self, size: ImageSize, longest: bool = False, interpolation=InterpolationMode.BICUBIC):
        self.size = _pair(size)
        self.longest = longest
        self.interpolation = interpolation

    def target_size(self, height: int, width: int) -> list[int]:
        ratios = (height / self.size[0], width / self.size[1])
        ratio = max(ratios) if self.longest else min(ratios)
        return [round(height / ratio), round(width / ratio)]

    def __call__(self, img):
        _, height, width = F.get_dimensions(img)
        return F.resize(img, self.target_size(height, width), self.interpolation)

    def __repr__(self) -> str:
        edge = "longest" if self.longest else "shortest"
        return (
            f"{type(self).__name__}(size={self.size}, {edge} edge, interpolation={self.interpolation.value})"
        )


class CenterCropOrPad(torch.nn.Module):
    """Center crop; edges shorter than the target are first padded with ``fill`` (letterboxing)."""

    def __init__(self, size: ImageSize, fill: int | tuple[int, ...] = 0):
        super().__init__()
        self.size = _pair(size)
        self.fill = fill

    def forward(self, img):
        crop_h, crop_w = self.size
        _, height, width = F.get_dimensions(img)
        if crop_w > width or crop_h > height:
            pad_w, pad_h = max(crop_w - width, 0), max(crop_h - height, 0)
            # The odd pixel goes to the right/bottom, as in torchvision's center_crop padding.
            img = F.pad(img, [pad_w // 2, pad_h // 2, (pad_w + 1) // 2, (pad_h + 1) // 2], fill=self.fill)
        return F.center_crop(img, [crop_h, crop_w])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, fill={self.fill})"


class ConvertMode:
    """``PIL.Image.convert(mode)`` for PIL images; tensors and arrays pass through."""

    def __init__(self, mode: str = "RGB"):
        self.mode = mode

    def __call__(self, img):
        return img.convert(self.mode) if isinstance(img, Image.Image) else img

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mode})"


class ToTensorIfNeeded:
    """``to_tensor`` for PIL images and arrays; tensors pass through."""

    def __call__(self, img):
        return img if isinstance(img, torch.Tensor) else F.to_tensor(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RandomApply:
    """Apply ``transform`` with probability ``p`` (drawn from Python's ``random``, like the rest of the pipeline)."""

    def __init__(self, transform: Callable, p: float):
        self.transform, self.p = transform, p

    def __call__(self, img):
        return self.transform(img) if random.random() < self.p else img

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r}, p={self.p})"


def _as_three(value: float | Sequence[float]) -> tuple[float, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3


def _interpolation_mode(interpolation: str) -> InterpolationMode:
    # 'random' only means something to timm's training crops; evaluation then uses bicubic.
    return InterpolationMode.BILINEAR if interpolation == "bilinear" else InterpolationMode.BICUBIC


def image_transform(
    image_size: ImageSize | Sequence[int],
    is_train: bool,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    resize_mode: str | None = None,
    interpolation: str | None = None,
    fill_color: int = 0,
    aug_cfg: Mapping[str, Any] | AugmentationCfg | None = None,
) -> Callable[[Any], torch.Tensor]:
    """The training or evaluation transform for images of ``image_size`` (int or (height, width))."""
    # "is None", not "or": a scalar mean of 0.0 is a real setting, not a request for the default.
    mean = _as_three(OPENAI_DATASET_MEAN if mean is None else mean)
    std = _as_three(OPENAI_DATASET_STD if std is None else std)
    interpolation = interpolation or "bicubic"
    _check_choice("interpolation", interpolation, INTERPOLATIONS)
    resize_mode = resize_mode or "shortest"
    _check_choice("resize mode", resize_mode, RESIZE_MODES)
    if not isinstance(image_size, int):
        image_size = _pair(image_size)
    if is_train:
        if isinstance(aug_cfg, Mapping):
            aug_cfg = AugmentationCfg.from_dict(aug_cfg)
        return _train_transform(image_size, mean, std, interpolation, aug_cfg or AugmentationCfg())
    return _eval_transform(image_size, mean, std, resize_mode, interpolation, fill_color)


def image_transform_v2(
    cfg: PreprocessCfg, is_train: bool, aug_cfg: Mapping[str, Any] | AugmentationCfg | None = None
) -> Callable[[Any], torch.Tensor]:
    return image_transform(
        cfg.size,
        is_train=is_train,
        mean=cfg.mean,
        std=cfg.std,
        resize_mode=cfg.resize_mode,
        interpolation=cfg.interpolation,
        fill_color=cfg.fill_color,
        aug_cfg=aug_cfg,
    )


def _eval_transform(
    image_size: ImageSize,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    resize_mode: str,
    interpolation: str,
    fill_color: int,
) -> Compose:
    mode = _interpolation_mode(interpolation)
    height, width = _pair(image_size)
    if resize_mode == "longest":
        steps: list[Callable] = [
            ResizeKeepRatio((height, width), longest=True, interpolation=mode),
            CenterCropOrPad((height, width), fill=fill_color),
        ]
    elif resize_mode == "squash":
        steps = [Resize((height, width), interpolation=mode)]
    elif height == width:
        # torchvision's shortest-edge Resize truncates the long edge (int()), unlike ResizeKeepRatio's round().
        steps = [Resize(height, interpolation=mode), CenterCrop((height, width))]
    else:
        # OpenCLIP resizes non-square targets with bicubic whatever the configured interpolation; kept so
        # pretrained weights see the pixels they were evaluated on.
        steps = [ResizeKeepRatio((height, width)), CenterCrop((height, width))]
    # Resizing happens before the RGB conversion (palette and grayscale images resize in their own mode).
    steps += [ConvertMode("RGB"), ToTensorIfNeeded(), Normalize(mean=mean, std=std)]
    return Compose(steps)


def _train_transform(
    image_size: ImageSize,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str,
    aug: AugmentationCfg,
) -> Callable[[Any], torch.Tensor]:
    if aug.use_timm:
        return _timm_train_transform(image_size, mean, std, interpolation, aug)
    crop_kwargs = {"ratio": aug.ratio} if aug.ratio is not None else {}
    # Training crops are always bicubic, as in the OpenCLIP runs the recipes reproduce.
    steps: list[Callable] = [
        RandomResizedCrop(
            image_size, scale=aug.scale, interpolation=InterpolationMode.BICUBIC, **crop_kwargs
        ),
        ConvertMode("RGB"),
    ]
    if aug.color_jitter is not None:
        jitter = ColorJitter(*_jitter_factors(aug.color_jitter))
        prob = 1.0 if aug.color_jitter_prob is None else aug.color_jitter_prob
        steps.append(RandomApply(jitter, prob))
    if aug.gray_scale_prob:
        steps.append(RandomApply(Grayscale(num_output_channels=3), aug.gray_scale_prob))
    steps += [ToTensorIfNeeded(), Normalize(mean=mean, std=std)]
    if aug.re_prob:
        from timm.data.random_erasing import RandomErasing

        steps.append(RandomErasing(aug.re_prob, mode="pixel", max_count=aug.re_count or 1, device="cpu"))
    return Compose(steps)


def _jitter_factors(color_jitter: float | tuple[float, ...]) -> tuple[float, ...]:
    if isinstance(color_jitter, float):
        return (color_jitter,) * 3
    return color_jitter


def _timm_train_transform(
    image_size: ImageSize,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str,
    aug: AugmentationCfg,
) -> Callable[[Any], torch.Tensor]:
    from timm.data import create_transform

    timm_kwargs: dict[str, Any] = {"color_jitter": None}  # timm jitters by default; CLIP training does not
    for key in ("scale", "ratio", "color_jitter", "color_jitter_prob", "re_prob", "re_count"):
        value = getattr(aug, key)
        if value is not None:
            timm_kwargs[key] = value
    if aug.gray_scale_prob is not None:
        timm_kwargs["grayscale_prob"] = aug.gray_scale_prob
    return create_transform(
        input_size=(3, *_pair(image_size)),
        is_training=True,
        hflip=0.0,
        mean=mean,
        std=std,
        re_mode="pixel",
        interpolation=interpolation,
        **timm_kwargs,
    )
