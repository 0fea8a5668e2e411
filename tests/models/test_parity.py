"""Parity with OpenCLIP 3.3 (test-only oracle) for every registry architecture OpenCLIP also has.

Three levels, cheapest first:
- every shared architecture, on the meta device: same model class, same state-dict keys and shapes, and the
  same attention heads, LayerNorm eps and activation at every module path (things shapes do not show);
- every shared architecture, numerically, made shallow (one block per tower, a small vocabulary, timm test
  trunks of the same family) but with its real widths, head sizes, image size and options: OpenCLIP's random
  weights load into clipctl with strict=True and image/text features, normalised features and the forward
  outputs agree to 1e-5 relative in float32;
- the small ones at full size, weights made by `open_clip.create_model(name)`.

The Hugging Face text towers (roberta, xlm-roberta) need a `transformers` config, which only the Hub has; here
a tiny config of the same model type is put into the test's offline HF cache under the real repo name, so both
libraries build the tower through their normal name lookup.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

import clipctl
from clipctl.config import get_model_config, list_models
from clipctl.models import build_model_from_config
from tests.helpers import add_to_hf_cache, remove_from_hf_cache

open_clip = pytest.importorskip("open_clip")
from open_clip.coca_model import CoCa as RefCoCa  # noqa: E402
from open_clip.model import CLIP as RefCLIP  # noqa: E402
from open_clip.model import CustomTextCLIP as RefCustomTextCLIP  # noqa: E402

logging.getLogger("timm").setLevel(logging.ERROR)
logging.getLogger("root").setLevel(logging.ERROR)

SHARED = sorted(set(list_models()) & set(open_clip.list_models()))
FULL_SIZE = ["ViT-S-32", "ViT-B-32", "RN50"]
# Not in OpenCLIP's list, but OpenCLIP builds them from the config: tiny registry models and the -quickgelu
# twins of architectures OpenCLIP lists (the activation is the only difference, checked below).
# Numerically, made shallow: one architecture per code path (tower family, head, pooling, text variant,
# head width other than 64); the others differ only in sizes, which the meta-device test checks for all.
SHALLOW_NUMERIC = [
    "ViT-H-14",  # head width 80
    "ViT-B-16-plus-240",  # width 896, image 240
    "RN50x4",  # ResNet width 80 (40 attention-pool heads)
    "coca_ViT-B-32",
    "coca_base",  # patch 18, decoder width 768 / 12 heads, vocabulary 64000
    "ViT-B-16-SigLIP",  # timm ViT trunk, MAP pool, no projection; bidirectional text, last-token pool
    "ViT-SO400M-14-SigLIP",  # text context 16, mlp ratio 3.7362
    "convnext_base",  # timm ConvNeXt, linear head
    "convnext_large_d",  # mlp head
    "roberta-ViT-B-32",  # HF text tower, QuickGELU vision
    "xlm-roberta-base-ViT-B-32",
    # not in OpenCLIP's list, built by OpenCLIP from the same config
    "tiny-ViT-8-64",
    "tiny-RN-demo",
    "ViT-S-32-quickgelu",
]
# -quickgelu twins differ from their base only in `quick_gelu` (checked for all below); one per family on meta
META_TWINS = [
    "RN50-quickgelu",
    "ViT-B-32-quickgelu",
    "coca_ViT-B-32-quickgelu",
    "ViT-B-16-SigLIP-quickgelu",
    "convnext_base-quickgelu",
]
# Small timm trunks with the same family, head and pooling code paths as the real ones.
SMALL_TIMM_TRUNKS = {
    "convnext_base": "test_convnext",
    "convnext_large": "test_convnext2",
    "convnext_xxlarge": "test_convnext3",
    "vit_base_patch16_siglip_224": "test_vit",
    "vit_so400m_patch14_siglip_224": "test_vit2",
    "vit_so400m_patch14_siglip_384": "test_vit3",
}
HF_TEXT_CONFIGS = {"roberta-base": "RobertaConfig", "xlm-roberta-base": "XLMRobertaConfig"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small ops on a shared machine run many times faster on one thread than with OpenMP spinning on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _is_hf_text(name: str) -> bool:
    return bool(get_model_config(name)["text_cfg"].get("hf_model_name"))


@pytest.fixture
def tiny_hf_text_configs():
    """Tiny configs of the HF text models the registry names, in the offline cache for this test only."""
    transformers = pytest.importorskip("transformers")
    for repo, cls in HF_TEXT_CONFIGS.items():
        config = getattr(transformers, cls)(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=40,
            type_vocab_size=1,
            pad_token_id=1,
        )
        add_to_hf_cache(repo, {"config.json": config.to_json_string()})
    yield
    for repo in HF_TEXT_CONFIGS:
        remove_from_hf_cache(repo)


def reference_model(model_cfg: dict) -> nn.Module:
    """OpenCLIP's model for a config, with OpenCLIP's own class choice (as `create_model` makes it)."""
    cfg = copy.deepcopy(model_cfg)
    quick_gelu = cfg.pop("quick_gelu", False)
    custom_text = cfg.pop("custom_text", False)
    multimodal_cfg = cfg.pop("multimodal_cfg", None)
    hf_text = bool(cfg["text_cfg"].get("hf_model_name"))
    if multimodal_cfg is not None and (custom_text or hf_text):
        model = RefCoCa(multimodal_cfg=multimodal_cfg, quick_gelu=quick_gelu, **cfg)
        # OpenCLIP 3.3 leaves the decoder's output projection uninitialised (torch.empty): give it values
        nn.init.normal_(model.text_decoder.text_projection, std=model.text_decoder.width**-0.5)
        return model
    if custom_text or hf_text:
        return RefCustomTextCLIP(quick_gelu=quick_gelu, **cfg)
    return RefCLIP(quick_gelu=quick_gelu, **cfg)


def shallow(model_cfg: dict) -> dict:
    """One block per tower, a 2x2 patch grid and a small vocabulary; widths, heads and options stay.

    The image size only sets the position table's length, which the meta-device test checks at full size.
    """
    cfg = copy.deepcopy(model_cfg)
    vision = cfg["vision_cfg"]
    if vision.get("timm_model_name"):
        vision["timm_model_name"] = SMALL_TIMM_TRUNKS[vision["timm_model_name"]]
        vision["image_size"] = 160  # what timm's test trunks take
    elif isinstance(vision.get("layers"), (list, tuple)):
        vision.update(layers=[2, 1, 1, 1], image_size=64)  # a stage's second block has no downsampling
    else:
        vision.update(layers=1, image_size=2 * vision.get("patch_size", 16))
    text = cfg["text_cfg"]
    if text.get("hf_model_name"):
        text["hf_model_pretrained"] = False
    else:
        text.update(layers=1, vocab_size=1000)
    if "multimodal_cfg" in cfg:
        cfg["multimodal_cfg"].update(layers=1, vocab_size=1000)
    return cfg


def random_text(batch: int, context_length: int, vocab_size: int, pad_id: int = 0) -> torch.Tensor:
    """Row 0 ends early (an EOT-like max id, then padding), the last row is full length."""
    low = 3 if pad_id else 1
    text = torch.randint(low, min(vocab_size - 1, 1000), (batch, context_length))
    text[0, 5] = vocab_size - 1
    text[0, 6:] = pad_id
    text[-1, -1] = vocab_size - 1
    return text


def assert_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    scale = ref.abs().max().item()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * scale)


def image_size_of(model: nn.Module) -> tuple[int, int]:
    size = model.visual.image_size
    return (size, size) if isinstance(size, int) else tuple(size)


def inputs_for(ours: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.randn(2, 3, *image_size_of(ours))
    text_tower = getattr(ours, "text", None)
    hf_config = getattr(text_tower, "config", None)
    if hf_config is not None:
        text = random_text(2, 12, hf_config.vocab_size, pad_id=hf_config.pad_token_id)
    else:
        text = random_text(2, ours.context_length, ours.vocab_size)
    return image, text


def assert_same_outputs(
    ours: nn.Module, ref: nn.Module, image: torch.Tensor, text: torch.Tensor, forward: bool = True
) -> None:
    """encode_image/encode_text, then forward (normalised features, logit scale and bias) as tuple and dict."""
    with torch.no_grad():
        assert_close(ours.encode_image(image), ref.encode_image(image))
        assert_close(ours.encode_text(text), ref.encode_text(text))
        if not forward:
            return
        if isinstance(ref, RefCoCa):
            ref_out, our_out = ref(image, text), ours(image, text)
            assert set(our_out) == set(ref_out)
            for key in ref_out:
                assert_close(our_out[key], ref_out[key])
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
        ours.output_dict = ref.output_dict = False


def module_semantics(model: nn.Module) -> dict[str, tuple]:
    """What a state dict does not show: heads per attention, norm eps, which activation."""
    found: dict[str, tuple] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            found[name] = ("attention", module.num_heads, module.batch_first)
        elif isinstance(module, nn.LayerNorm):
            found[name] = ("layer_norm", module.eps, tuple(module.normalized_shape))
        elif isinstance(module, nn.GELU):
            found[name] = ("gelu", module.approximate)
        elif type(module).__name__ == "QuickGELU":
            found[name] = ("quick_gelu",)
    return found


@pytest.mark.parametrize("name", [n for n in SHARED if not n.endswith("-quickgelu")] + META_TWINS)
def test_keys_shapes_heads_and_norms_match_openclip_on_meta(
    name: str, request: pytest.FixtureRequest
) -> None:
    if _is_hf_text(name):
        request.getfixturevalue("tiny_hf_text_configs")
    cfg = get_model_config(name)
    if _is_hf_text(name):
        cfg["text_cfg"]["hf_model_pretrained"] = False
    with torch.device("meta"):
        ref = reference_model(cfg)
        ours = build_model_from_config(cfg)
    assert type(ours).__name__ == type(ref).__name__
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sorted(our_shapes) == sorted(ref_shapes)
    assert our_shapes == ref_shapes
    assert module_semantics(ours) == module_semantics(ref)


@pytest.mark.parametrize("name", [n for n in list_models() if n.endswith("-quickgelu")])
def test_quickgelu_twin_differs_only_in_activation(name: str) -> None:
    cfg = get_model_config(name)
    assert cfg.pop("quick_gelu") is True
    base = get_model_config(name.removesuffix("-quickgelu"))
    base.pop("quick_gelu", None)
    assert cfg == base


@pytest.mark.parametrize("name", SHALLOW_NUMERIC)
def test_outputs_match_openclip_float32(name: str, request: pytest.FixtureRequest) -> None:
    if _is_hf_text(name):
        request.getfixturevalue("tiny_hf_text_configs")
    torch.manual_seed(0)
    cfg = get_model_config(name) if name.startswith("tiny") else shallow(get_model_config(name))
    ref = reference_model(cfg).eval()
    ours = build_model_from_config(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    image, text = inputs_for(ours)
    assert_same_outputs(ours, ref, image, text)


@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_openclip_weights_give_the_same_features(name: str, tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    ref = open_clip.create_model(name, pretrained=None).eval()
    if name == FULL_SIZE[0]:  # once through a file and the public API, as a user would load it
        torch.save(ref.state_dict(), tmp_path / "weights.pt")
        ours = clipctl.create_model(name, pretrained=str(tmp_path / "weights.pt")).eval()
    else:
        ours = build_model_from_config(get_model_config(name)).eval()
        ours.load_state_dict(ref.state_dict(), strict=True)
    image = torch.randn(1, 3, *image_size_of(ours))
    text = open_clip.get_tokenizer(name)(["a photo of a cat", "", "ünïcödé 🐱 &amp; " * 20])
    assert_same_outputs(ours, ref, image, text, forward=False)


def test_state_dict_key_order_matches_openclip() -> None:
    for name in ("tiny-ViT-8-64", "coca_ViT-B-32", "ViT-B-16-SigLIP"):
        cfg = get_model_config(name)
        with torch.device("meta"):
            assert list(build_model_from_config(cfg).state_dict()) == list(reference_model(cfg).state_dict())


VISION_VARIANTS = [
    {"pool_type": "avg"},
    {"pool_type": "avg", "final_ln_after_pool": True},
    {"pool_type": "none"},
    {"final_ln_after_pool": True, "no_ln_pre": True},
    {"patch_dropout": 0.5, "ls_init_value": 0.1},
    {"pos_embed_type": "sin_cos_2d"},
    {"attentional_pool": True, "attn_pooler_queries": 6, "attn_pooler_heads": 4, "output_tokens": True},
    {"attentional_pool": "parallel", "attn_pooler_queries": 6, "attn_pooler_heads": 4},
    {"attentional_pool": "cascade", "attn_pooler_queries": 6, "attn_pooler_heads": 4},
    {"act_kwargs": {"approximate": "tanh"}, "norm_kwargs": {"eps": 1e-6}},
]


@pytest.mark.parametrize("variant", VISION_VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_vision_transformer_variants_match_openclip(variant: dict) -> None:
    from open_clip.transformer import VisionTransformer as RefViT

    from clipctl.models.build import _norm_and_act, build_vision_tower

    vision_cfg = {"image_size": 32, "patch_size": 8, "layers": 2, "width": 64, "head_width": 16, **variant}
    torch.manual_seed(0)
    ours = build_vision_tower(64, vision_cfg).eval()
    kwargs = {k: v for k, v in vision_cfg.items() if k not in ("head_width", "act_kwargs", "norm_kwargs")}
    norm_layer, act_layer = _norm_and_act(vision_cfg, False, None)
    ref = RefViT(
        heads=4,
        mlp_ratio=4.0,
        output_dim=64,
        act_layer=act_layer,
        norm_layer=norm_layer,
        **kwargs,
    ).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert module_semantics(ours) == module_semantics(ref)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref_out, our_out = ref(image), ours(image)
    if isinstance(ref_out, tuple):
        for a, b in zip(our_out, ref_out, strict=True):
            assert_close(a, b)
    else:
        assert_close(our_out, ref_out)


TEXT_VARIANTS = [
    {"pool_type": "first"},
    {"pool_type": "last", "no_causal_mask": True, "proj_bias": True},
    {"pool_type": "eos", "eos_id": 7},
    {"proj_type": "none", "output_tokens": True},
    {"embed_cls": True, "output_tokens": True, "pad_id": 0},
    {"embed_cls": True, "no_causal_mask": True},
    {"ls_init_value": 0.1, "mlp_ratio": 3.7362},
]


@pytest.mark.parametrize("variant", TEXT_VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_text_transformer_variants_match_openclip(variant: dict) -> None:
    from open_clip.transformer import TextTransformer as RefText

    from clipctl.models.build import build_text_tower

    text_cfg = {"context_length": 12, "vocab_size": 50, "width": 32, "heads": 4, "layers": 2, **variant}
    torch.manual_seed(0)
    ref = RefText(output_dim=16, **text_cfg).eval()
    ours = build_text_tower(16, text_cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    text = random_text(3, 12, 50)
    text[1, 4] = 7  # an 'eos' id inside a row
    with torch.no_grad():
        ref_out, our_out = ref(text), ours(text)
    if isinstance(ref_out, tuple):
        for a, b in zip(our_out, ref_out, strict=True):
            assert_close(a, b)
    else:
        assert_close(our_out, ref_out)


@pytest.mark.parametrize(
    ("pool", "proj", "proj_bias", "drop"),
    [
        ("abs_attn", "linear", False, 0.0),
        ("rot_attn", "none", False, 0.0),
        ("avg", "mlp", True, 0.1),
        ("avg", "linear", True, 0.1),
        ("token", "none", False, 0.0),
        ("", "linear", False, 0.0),
        ("map", "none", False, 0.0),
    ],
)
def test_timm_tower_heads_match_openclip(pool: str, proj: str, proj_bias: bool, drop: float) -> None:
    from open_clip.timm_model import TimmModel as RefTimmModel

    from clipctl.models.timm_tower import TimmModel

    # attention pools need channels divisible by their 64-wide heads, which timm's test_resnet lacks
    trunk = {"token": "test_vit", "map": "test_vit", "rot_attn": "resnet18", "abs_attn": "resnet18"}.get(
        pool, "test_resnet"
    )
    kwargs = dict(
        embed_dim=24, image_size=64, pool=pool, proj=proj, proj_bias=proj_bias, drop=drop, drop_path=0.1
    )
    torch.manual_seed(0)
    ref = RefTimmModel(trunk, **kwargs).eval()
    ours = TimmModel(trunk, **kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert str(ours.head) == str(ref.head)
    image = torch.randn(2, 3, 64, 64) if trunk == "resnet18" else torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert_close(ours(image), ref(image))


def test_hf_text_towers_cannot_be_built_offline_without_a_cached_config() -> None:
    """The limitation the tiny cached configs above work around: the Hub config is needed, nothing else."""
    from clipctl.errors import ClipctlError

    for name in ("roberta-ViT-B-32", "xlm-roberta-base-ViT-B-32"):
        with pytest.raises(ClipctlError, match="local Hugging Face cache"):
            build_model_from_config(get_model_config(name))


def test_coca_with_an_hf_text_tower_matches_openclip(tiny_hf_text_configs) -> None:  # noqa: ANN001
    """OpenCLIP's coca_roberta-ViT-B-32 (not registered here), shrunk.

    OpenCLIP sizes the caption decoder by text_cfg's vocab_size (49408 by default), not the HF vocabulary.
    """
    cfg = open_clip.get_model_config("coca_roberta-ViT-B-32")
    cfg["embed_dim"] = 16
    cfg["vision_cfg"].update(image_size=64, layers=1, width=32, head_width=16)
    cfg["text_cfg"]["hf_model_pretrained"] = False
    cfg["multimodal_cfg"].update(width=32, heads=2, layers=1)
    torch.manual_seed(0)
    ref = reference_model(cfg).eval()
    ours = build_model_from_config(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert ours.text_decoder.text_projection.shape == (32, 49408)
    image, text = inputs_for(ours)
    assert_same_outputs(ours, ref, image, text)


def test_patch_dropout_in_training_matches_openclip_with_the_same_seed() -> None:
    from open_clip.transformer import VisionTransformer as RefViT

    from clipctl.models.build import build_vision_tower

    vision_cfg = {"image_size": 32, "patch_size": 4, "layers": 1, "width": 32, "head_width": 16}
    torch.manual_seed(0)
    ours = build_vision_tower(16, {**vision_cfg, "patch_dropout": 0.5}).train()
    ref = RefViT(32, 4, 32, 1, 2, 4.0, output_dim=16, patch_dropout=0.5, output_tokens=True).train()
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.output_tokens = True
    image = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    ref_pooled, ref_tokens = ref(image)
    torch.manual_seed(1)
    our_pooled, our_tokens = ours(image)
    assert our_tokens.shape == (2, 32, 32)  # half of the 64 patches kept
    assert_close(our_tokens, ref_tokens)
    assert_close(our_pooled, ref_pooled)
    ours.eval()
    assert ours(image)[1].shape == (2, 64, 32)
