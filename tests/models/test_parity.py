"""Parity with OpenCLIP 3.3 (test-only oracle): same state-dict keys/shapes for every registry architecture,
same float32 outputs on the same random weights for the small ones."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from clipctl.config import get_model_config, list_models
from clipctl.models import build_model_from_config

open_clip = pytest.importorskip("open_clip")
from open_clip.coca_model import CoCa as RefCoCa  # noqa: E402
from open_clip.model import CLIP as RefCLIP  # noqa: E402
from open_clip.model import CustomTextCLIP as RefCustomTextCLIP  # noqa: E402

logging.getLogger("timm").setLevel(logging.ERROR)

# Full size would cost minutes of CPU; depth, image size and vocabulary do not change the code paths, so the
# numeric checks run each architecture smaller (and with a small timm trunk of the same family and pooling).
SMALL_TIMM_TRUNKS = {"convnext_base": "test_convnext", "vit_base_patch16_siglip_224": "test_vit"}

NUMERIC_MODELS = [
    "tiny-ViT-8-64",
    "ViT-S-32",
    "ViT-S-32-quickgelu",
    "ViT-B-32",
    "RN50",
    "coca_ViT-B-32",
    "ViT-B-16-SigLIP",
    "convnext_base",
]


def reference_model(model_cfg: dict) -> torch.nn.Module:
    """OpenCLIP's model for a config, with OpenCLIP's own class choice (as `create_model` makes it)."""
    cfg = copy.deepcopy(model_cfg)
    quick_gelu = cfg.pop("quick_gelu", False)
    custom_text = cfg.pop("custom_text", False)
    multimodal_cfg = cfg.pop("multimodal_cfg", None)
    hf_text = bool(cfg["text_cfg"].get("hf_model_name"))
    if multimodal_cfg is not None and (custom_text or hf_text):
        return RefCoCa(multimodal_cfg=multimodal_cfg, quick_gelu=quick_gelu, **cfg)
    if custom_text or hf_text:
        return RefCustomTextCLIP(quick_gelu=quick_gelu, **cfg)
    return RefCLIP(quick_gelu=quick_gelu, **cfg)


def shallow(model_cfg: dict) -> dict:
    cfg = copy.deepcopy(model_cfg)
    vision = cfg["vision_cfg"]
    if vision.get("timm_model_name"):
        vision["timm_model_name"] = SMALL_TIMM_TRUNKS.get(
            vision["timm_model_name"], vision["timm_model_name"]
        )
    elif isinstance(vision.get("layers"), (list, tuple)):
        vision["layers"] = [1, 2, 1, 1]
    else:
        vision["layers"] = 2
    vision["image_size"] = 160 if vision.get("timm_model_name") else 64  # timm test trunks take 160
    cfg["text_cfg"].update(layers=2, vocab_size=1000)
    if "multimodal_cfg" in cfg:
        cfg["multimodal_cfg"].update(layers=2, vocab_size=1000)
    return cfg


def random_text(batch: int, context_length: int, vocab_size: int) -> torch.Tensor:
    """Two kinds of rows: padded with an EOT-like max id, and full length."""
    text = torch.randint(1, min(vocab_size - 1, 1000), (batch, context_length))
    text[0, 5] = vocab_size - 1
    text[0, 6:] = 0
    text[-1, -1] = vocab_size - 1
    return text


def assert_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    scale = ref.abs().max().item()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * scale)


def _is_hf_text(name: str) -> bool:
    return bool(get_model_config(name)["text_cfg"].get("hf_model_name"))


def _meta_names() -> list[str]:
    names = []
    for name in list_models():
        base = name.removesuffix("-quickgelu")
        if name != base and base in list_models():
            continue  # covered by test_quickgelu_variant_differs_only_in_activation
        names.append(name)
    return names


@pytest.mark.parametrize("name", _meta_names())
def test_state_dict_keys_and_shapes_match_openclip(name: str) -> None:
    cfg = get_model_config(name)
    if _is_hf_text(name):
        pytest.skip("HF text config is not in the local cache (no network)")
    with torch.device("meta"):
        ref = reference_model(cfg)
        ours = build_model_from_config(cfg)
    assert type(ours).__name__ == type(ref).__name__
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes


@pytest.mark.parametrize("name", [n for n in list_models() if n.endswith("-quickgelu")])
def test_quickgelu_variant_differs_only_in_activation(name: str) -> None:
    cfg = get_model_config(name)
    assert cfg.pop("quick_gelu") is True
    base = get_model_config(name.removesuffix("-quickgelu"))
    base.pop("quick_gelu", None)
    assert cfg == base


@pytest.mark.parametrize("name", NUMERIC_MODELS)
def test_outputs_match_openclip_float32(name: str) -> None:
    torch.manual_seed(0)
    cfg = get_model_config(name) if name.startswith("tiny") else shallow(get_model_config(name))
    ref = reference_model(cfg).eval()
    ours = build_model_from_config(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)

    image = torch.randn(2, 3, *ours.visual.image_size)
    text = random_text(2, ours.context_length, ours.vocab_size)
    with torch.no_grad():
        assert_close(ours.encode_image(image), ref.encode_image(image))
        assert_close(ours.encode_text(text), ref.encode_text(text))
        if name.startswith("coca"):
            ref_out, our_out = ref(image, text), ours(image, text)
            assert set(our_out) == set(ref_out)
            assert_close(our_out["logits"], ref_out["logits"])
            assert torch.equal(our_out["labels"], ref_out["labels"])
            return
        ref_tuple, our_tuple = ref(image, text), ours(image, text)
        assert len(our_tuple) == len(ref_tuple)
        for a, b in zip(our_tuple, ref_tuple, strict=True):
            assert_close(a, b)
        ours.output_dict = ref.output_dict = True
        ref_dict, our_dict = ref(image, text), ours(image, text)
        assert set(our_dict) == set(ref_dict)
        for key in ref_dict:
            assert_close(our_dict[key], ref_dict[key])


def test_state_dict_key_order_matches_openclip() -> None:
    cfg = get_model_config("tiny-ViT-8-64")
    with torch.device("meta"):
        assert list(build_model_from_config(cfg).state_dict()) == list(reference_model(cfg).state_dict())


def test_patch_dropout_and_text_length_variants_match_in_eval() -> None:
    torch.manual_seed(0)
    cfg = get_model_config("tiny-ViT-8-64")
    cfg["vision_cfg"].update(patch_dropout=0.5, final_ln_after_pool=True, pool_type="avg", no_ln_pre=True)
    cfg["text_cfg"].update(pool_type="first", ls_init_value=0.1)
    ref = reference_model(cfg).eval()
    ours = build_model_from_config(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    image = torch.randn(2, 3, 64, 64)
    text = random_text(2, 32, 49408)
    with torch.no_grad():
        assert_close(ours.encode_image(image), ref.encode_image(image))
        assert_close(ours.encode_text(text), ref.encode_text(text))


def test_hf_text_tower_matches_openclip_on_a_tiny_local_config() -> None:
    transformers = pytest.importorskip("transformers")
    from open_clip.hf_model import HFTextEncoder as RefHFTextEncoder

    from clipctl.models.hf_text import HFTextEncoder

    config = transformers.RobertaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    ref = RefHFTextEncoder(
        "roberta-base", output_dim=16, config=config, proj_type="mlp", pooler_type="mean_pooler"
    )
    ours = HFTextEncoder(
        "roberta-base", output_dim=16, config=config, proj_type="mlp", pooler_type="mean_pooler"
    )
    state = ref.state_dict()
    state.pop("transformer.embeddings.position_ids", None)
    ours.load_state_dict(state, strict=False)
    assert set(ours.state_dict()) >= {k for k in state if "pooler" not in k}
    text = torch.randint(3, 100, (2, 12))
    text[0, 6:] = 1
    ref.eval()
    ours.eval()
    with torch.no_grad():
        assert_close(ours(text), ref(text))


@pytest.mark.parametrize(
    ("pool", "proj", "proj_bias"),
    [
        ("abs_attn", "linear", False),
        ("rot_attn", "none", False),
        ("avg", "mlp", True),
        ("token", "none", False),
    ],
)
def test_timm_tower_heads_match_openclip(pool: str, proj: str, proj_bias: bool) -> None:
    from open_clip.timm_model import TimmModel as RefTimmModel

    from clipctl.models.timm_tower import TimmModel

    # attention pools need channels divisible by their 64-wide heads, which timm's test_resnet lacks
    trunk = {"token": "test_vit", "rot_attn": "resnet18", "abs_attn": "resnet18"}.get(pool, "test_resnet")
    kwargs = dict(embed_dim=24, image_size=64, pool=pool, proj=proj, proj_bias=proj_bias)
    torch.manual_seed(0)
    ref = RefTimmModel(trunk, **kwargs).eval()
    ours = TimmModel(trunk, **kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    image = torch.randn(2, 3, 64, 64) if trunk == "resnet18" else torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert_close(ours(image), ref(image))
