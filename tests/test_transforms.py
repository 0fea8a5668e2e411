import random

import pytest
import torch
from PIL import Image

from clipctl.constants import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, OPENAI_DATASET_MEAN
from clipctl.errors import ClipctlError
from clipctl.transforms import (
    AugmentationCfg,
    PreprocessCfg,
    image_transform,
    image_transform_v2,
    merge_preprocess_dict,
    parse_aug_cfg,
)

open_clip = pytest.importorskip("open_clip")
from open_clip import transform as oc_transform  # noqa: E402


def _image(width: int, height: int, mode: str, seed: int) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    # Smooth gradients plus noise, so resampling differences would show in every pixel.
    ys = torch.linspace(0, 1, height)[:, None, None]
    xs = torch.linspace(0, 1, width)[None, :, None]
    base = torch.cat(
        [ys.expand(height, width, 1), xs.expand(height, width, 1), (ys * xs).expand(height, width, 1)], 2
    )
    pixels = (base * 200 + torch.rand(height, width, 3, generator=gen) * 55).to(torch.uint8).numpy()
    img = Image.fromarray(pixels, "RGB")
    if mode == "RGBA":
        alpha = Image.fromarray((torch.rand(height, width, generator=gen) * 255).to(torch.uint8).numpy(), "L")
        img.putalpha(alpha)
        return img
    if mode == "P":
        return img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return img.convert(mode)


IMAGES = [
    _image(w, h, mode, seed=i)
    for i, ((w, h), mode) in enumerate(
        [
            ((57, 41), "RGB"),
            ((41, 90), "L"),
            ((64, 64), "RGBA"),
            ((120, 30), "P"),
            ((20, 26), "RGB"),
            ((33, 33), "P"),
        ]
    )
]


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "random"])
@pytest.mark.parametrize("size", [32, (24, 40), (40, 24)])
def test_eval_transform_matches_openclip(resize_mode, interpolation, size):
    kwargs = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, resize_mode=resize_mode, interpolation=interpolation)
    ours = image_transform(size, is_train=False, fill_color=37, **kwargs)
    ref = oc_transform.image_transform(size, is_train=False, fill_color=37, **kwargs)
    for img in IMAGES:
        out = ours(img)
        expected_hw = (size, size) if isinstance(size, int) else size
        assert out.shape == (3, *expected_hw)
        assert torch.equal(out, ref(img)), (img.mode, img.size)


def test_default_eval_transform_matches_openclip_at_224():
    img = _image(300, 200, "RGB", seed=7)
    ours = image_transform(224, is_train=False)
    ref = oc_transform.image_transform(224, is_train=False)
    assert torch.equal(ours(img), ref(img))


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessCfg(size=32),
        PreprocessCfg(size=(24, 40), mean=INCEPTION_MEAN, std=INCEPTION_MEAN, resize_mode="squash"),
        PreprocessCfg(size=32, interpolation="bilinear", resize_mode="longest", fill_color=255),
    ],
)
def test_eval_transform_v2_matches_openclip(cfg):
    ref_cfg = oc_transform.PreprocessCfg(**merge_preprocess_dict(cfg, {}))
    ours, ref = (
        image_transform_v2(cfg, is_train=False),
        oc_transform.image_transform_v2(ref_cfg, is_train=False),
    )
    for img in IMAGES:
        assert torch.equal(ours(img), ref(img))


def test_longest_mode_pads_with_fill_colour():
    wide = Image.new("RGB", (64, 16), (255, 255, 255))
    out = image_transform(32, is_train=False, resize_mode="longest", fill_color=0, mean=0.0, std=1.0)(wide)
    assert out.shape == (3, 32, 32)
    assert (out[:, 0] == 0).all() and (out[:, 16] == 1).all()


def test_eval_transform_passes_tensors_through_conversion():
    tensor = torch.rand(3, 50, 40)
    out = image_transform(32, is_train=False)(tensor)
    assert out.shape == (3, 32, 32)


def test_bad_resize_mode_and_interpolation_are_clear_errors():
    with pytest.raises(ClipctlError, match="resize mode 'crop'"):
        image_transform(32, is_train=False, resize_mode="crop")
    with pytest.raises(ClipctlError, match="interpolation 'nearest'"):
        PreprocessCfg(interpolation="nearest")


def test_merge_preprocess_dict_keeps_only_known_non_none_keys():
    merged = merge_preprocess_dict({"size": 224, "foo": 1}, {"mean": None, "resize_mode": "squash", "bar": 2})
    assert merged == {"size": 224, "resize_mode": "squash"}
    assert merge_preprocess_dict(PreprocessCfg(), {"size": 336})["mean"] == OPENAI_DATASET_MEAN


def test_parse_aug_cfg_reads_literals_and_strings():
    parsed = parse_aug_cfg(
        ["scale=(0.5, 1.0)", "use_timm=True", "re_prob=0.4", "color_jitter=0.2", "re_count = 2"]
    )
    assert parsed == {
        "scale": (0.5, 1.0),
        "use_timm": True,
        "re_prob": 0.4,
        "color_jitter": 0.2,
        "re_count": 2,
    }


def test_parse_aug_cfg_rejects_unknown_key_naming_known_keys():
    with pytest.raises(ClipctlError, match=r"unknown augmentation setting 'hflip'; known: scale, ratio"):
        parse_aug_cfg(["hflip=0.5"])
    with pytest.raises(ClipctlError, match="unknown augmentation setting 'auto_augment'"):
        image_transform(32, is_train=True, aug_cfg={"auto_augment": "rand-m9"})


@pytest.mark.parametrize(
    "item", ["scale", "=1", "scale=(2, 1)", "re_prob=1.5", "use_timm=maybe", "ratio=abc"]
)
def test_parse_aug_cfg_rejects_malformed_items(item):
    with pytest.raises(ClipctlError):
        parse_aug_cfg([item])


def test_train_transform_matches_openclip_for_shared_settings():
    img = _image(80, 60, "RGB", seed=3)
    ours = image_transform(32, is_train=True, aug_cfg={"scale": (0.5, 1.0)})
    ref = oc_transform.image_transform(32, is_train=True, aug_cfg={"scale": (0.5, 1.0)})
    random.seed(0), torch.manual_seed(0)
    a = ours(img)
    random.seed(0), torch.manual_seed(0)
    assert a.shape == (3, 32, 32) and torch.equal(a, ref(img))


def test_train_transform_honours_ratio():
    crop = image_transform((24, 40), is_train=True, aug_cfg=AugmentationCfg(ratio=(1.0, 1.0))).transforms[0]
    assert tuple(crop.ratio) == (1.0, 1.0)
    torch.manual_seed(0)
    img = _image(100, 100, "RGB", seed=1)
    for _ in range(20):
        _, _, h, w = crop.get_params(img, crop.scale, crop.ratio)
        assert abs(h - w) <= 1


def test_train_color_jitter_and_grayscale_probabilities():
    img = _image(40, 40, "RGB", seed=2)
    always_gray = image_transform(16, is_train=True, aug_cfg={"gray_scale_prob": 1.0}, mean=0.0, std=1.0)
    out = always_gray(img)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    # color_jitter alone jitters every image (OpenCLIP silently ignored it without color_jitter_prob).
    jitter = image_transform(16, is_train=True, aug_cfg={"color_jitter": (0.4, 0.4, 0.4, 0.1)})
    assert any("ColorJitter" in repr(t) and "p=1.0" in repr(t) for t in jitter.transforms)
    never = image_transform(16, is_train=True, aug_cfg={"color_jitter": 0.4, "color_jitter_prob": 0.0})
    random.seed(0), torch.manual_seed(0)
    a = never(img)
    random.seed(0), torch.manual_seed(0)
    b = image_transform(16, is_train=True)(img)
    assert torch.equal(a, b)


def test_random_erasing_without_timm_is_applied():
    img = Image.new("RGB", (40, 40), (128, 128, 128))
    tf = image_transform(32, is_train=True, aug_cfg={"re_prob": 1.0, "re_count": 1}, mean=0.5, std=1.0)
    assert "RandomErasing" in repr(tf.transforms[-1])
    assert tf(img).abs().max() > 0.01  # a flat grey image is all ~0 unless a patch was erased with noise


def test_use_timm_train_transform_matches_openclip_and_has_random_erasing():
    aug = parse_aug_cfg(["scale=(0.5, 1.0)", "use_timm=True", "re_prob=0.4", "color_jitter=(0.4, 0.4, 0.4)"])
    ours = image_transform(32, is_train=True, aug_cfg=aug, interpolation="bicubic")
    erasing = [t for t in ours.transforms if type(t).__name__ == "RandomErasing"]
    assert len(erasing) == 1 and erasing[0].probability == 0.4
    ref = oc_transform.image_transform(32, is_train=True, aug_cfg=aug, interpolation="bicubic")
    img = _image(70, 50, "RGB", seed=5)
    for seed in range(3):
        random.seed(seed), torch.manual_seed(seed)
        a = ours(img)
        random.seed(seed), torch.manual_seed(seed)
        assert a.shape == (3, 32, 32) and torch.equal(a, ref(img))


def test_use_timm_honours_grayscale_prob():
    tf = image_transform(32, is_train=True, aug_cfg={"use_timm": True, "gray_scale_prob": 0.3})
    assert "Grayscale" in repr(tf)
