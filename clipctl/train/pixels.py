"""The training loader's pixel path: decoding, the part of the augmentation that runs in loader workers, and
the float conversion that runs where the model is.

JPEGs are decoded by simplejpeg (libjpeg-turbo, accurate DCT and upsampling: the same pixels as PIL for RGB and
greyscale JPEGs, about twice as fast); other formats, CMYK JPEGs and anything simplejpeg refuses go through PIL
as before. When the training transform ends in ``ToTensor`` + ``Normalize`` (the default), workers stop before
those two and send uint8 batches (a quarter of the bytes to collate, pass between processes and copy to the
device); :class:`InputNormalizer` then does the same arithmetic on the device, so the model sees the same floats.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import Compose, Normalize, RandomResizedCrop
from torchvision.transforms import functional as F

from clipctl.transforms import ToTensorIfNeeded

_JPEG_MAGIC = b"\xff\xd8"
# JPEG colour spaces (as simplejpeg's header reports them) where its output equals PIL's bit for bit: YCbCr is
# the ordinary colour JPEG; CMYK/YCCK convert differently and stay with PIL
_SAME_AS_PIL = ("YCbCr", "Gray", "RGB")


def decode_rgb(data: bytes, as_array: bool = False) -> Image.Image | np.ndarray:
    """An RGB image from encoded bytes; raises on truncated or undecodable data (the caller skips the sample).

    ``as_array``: a JPEG that simplejpeg decodes comes back as the HWC uint8 array, for a transform that crops
    it before making a PIL image (see :class:`CropBeforeImage`).
    """
    if data[:2] == _JPEG_MAGIC:
        pixels = _decode_jpeg(data)
        if pixels is not None:
            return pixels if as_array else Image.fromarray(pixels, "RGB")
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")  # convert() forces the full decode, so truncated files fail here


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    import simplejpeg

    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in _SAME_AS_PIL:
        return None
    return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False)


def read_rgb(path: str, as_array: bool = False) -> Image.Image | np.ndarray:
    with open(path, "rb") as fh:
        return decode_rgb(fh.read(), as_array)


def accepts_arrays(transform: Any) -> bool:
    """Whether ``transform`` takes decoded arrays as well as PIL images."""
    return bool(getattr(transform, "accepts_arrays", False))


class CropBeforeImage:
    """``RandomResizedCrop`` that also takes a decoded HWC uint8 array: the same random box (same draws from
    the same RNG), cut from the array, and only the crop becomes a PIL image before the same PIL resize.
    Making the whole decode a PIL image costs ~0.3 ms at 256 px (PIL keeps RGB in 4 bytes a pixel), about as
    much as decoding it; the crop is 8-100% of it."""

    def __init__(self, crop: RandomResizedCrop):
        self.crop = crop

    def __call__(self, img: Image.Image | np.ndarray) -> Image.Image:
        if not isinstance(img, np.ndarray):
            return self.crop(img)
        top, left, height, width = self.crop.get_params(
            torch.from_numpy(img).permute(2, 0, 1), self.crop.scale, self.crop.ratio
        )
        patch = Image.fromarray(np.ascontiguousarray(img[top : top + height, left : left + width]), "RGB")
        return F.resize(patch, self.crop.size, self.crop.interpolation, antialias=self.crop.antialias)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.crop!r})"


class HostTransform(Compose):
    """The worker part of a split training transform (see :func:`split_uint8`)."""

    def __init__(self, transforms: list[Callable[[Any], Any]]):
        super().__init__(transforms)
        self.accepts_arrays = isinstance(transforms[0], CropBeforeImage)


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """A CHW uint8 tensor of an RGB PIL image (what ``ToTensor`` sees before it divides by 255)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


class InputNormalizer:
    """Model input from a loader batch: uint8 batches are moved, then converted as ``ToTensor`` + ``Normalize``
    would have (``/ 255``, ``- mean``, ``/ std``, in float32); float batches only move."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        if images.dtype != torch.uint8:
            return images
        pixels = images.to(torch.float32).div_(255)
        if self.mean is not None:
            pixels.sub_(self.mean.to(device)).div_(self.std.to(device))
        return pixels


def split_uint8(
    preprocess: Callable[[Any], torch.Tensor],
) -> tuple[Callable[[Any], torch.Tensor], InputNormalizer]:
    """(worker part, device part) of a training transform. A ``Compose`` ending in ``ToTensorIfNeeded`` +
    ``Normalize`` splits before those two; anything else stays whole in the workers (float batches)."""
    steps = getattr(preprocess, "transforms", None) if isinstance(preprocess, Compose) else None
    if (
        steps is not None
        and len(steps) >= 2
        and isinstance(steps[-2], ToTensorIfNeeded)
        and isinstance(steps[-1], Normalize)
        and not steps[-1].inplace
    ):
        first = [CropBeforeImage(steps[0])] if type(steps[0]) is RandomResizedCrop else [steps[0]]
        host = HostTransform([*first, *steps[1:-2], pil_to_uint8])
        return host, InputNormalizer(steps[-1].mean, steps[-1].std)
    return preprocess, InputNormalizer()
