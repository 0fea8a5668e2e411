"""LiT-style tower locking and gradient checkpointing, checked against OpenCLIP 3.3 on the same architecture.

Locking must leave exactly the parameters trainable that OpenCLIP leaves trainable (its layer grouping), and
turn the same BatchNorms into frozen ones. Gradient checkpointing must recompute blocks in the backward pass
and give the same gradients as without it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from clipctl.models import build_model_from_config
from tests.helpers import add_to_hf_cache, remove_from_hf_cache

open_clip = pytest.importorskip("open_clip")
from open_clip.coca_model import CoCa as RefCoCa  # noqa: E402
from open_clip.model import CLIP as RefCLIP  # noqa: E402
from open_clip.model import CustomTextCLIP as RefCustomTextCLIP  # noqa: E402

VIT_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "patch_size": 8, "layers": 3, "width": 32, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 3},
}


def cfg_with(**changes: dict) -> dict:
    cfg = copy.deepcopy(VIT_CFG)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


CONFIGS = {
    "vit": VIT_CFG,
    "custom_text": cfg_with(custom_text=True),
    "coca": cfg_with(  # text width = decoder width = embed_dim, as in the released CoCa models
        embed_dim=32,
        custom_text=True,
        vision_cfg={
            "attentional_pool": True,
            "attn_pooler_queries": 4,
            "attn_pooler_heads": 2,
            "output_tokens": True,
        },
        text_cfg={"embed_cls": True, "output_tokens": True},
        multimodal_cfg={"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 2},
    ),
    "resnet": cfg_with(vision_cfg={"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16}),
    "timm_resnet": cfg_with(
        vision_cfg={
            "timm_model_name": "test_resnet",
            "timm_proj": "linear",
            "timm_pool": "avg",
            "image_size": 64,
        }
    ),
    "timm_convnext": cfg_with(
        custom_text=True,
        vision_cfg={
            "timm_model_name": "test_convnext",
            "timm_proj": "mlp",
            "timm_pool": "",
            "image_size": 64,
        },
    ),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_roberta():
    transformers = pytest.importorskip("transformers")
    config = transformers.RobertaConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=1,
        pad_token_id=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    add_to_hf_cache("roberta-base", {"config.json": config.to_json_string()})
    yield cfg_with(text_cfg={"hf_model_name": "roberta-base", "hf_model_pretrained": False})
    remove_from_hf_cache("roberta-base")


def reference_model(model_cfg: dict) -> nn.Module:
    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False)
    multimodal_cfg = cfg.pop("multimodal_cfg", None)
    hf_text = bool(cfg["text_cfg"].get("hf_model_name"))
    if multimodal_cfg is not None:
        model = RefCoCa(multimodal_cfg=multimodal_cfg, **cfg)
        # OpenCLIP 3.3 leaves the decoder's output projection uninitialised (torch.empty): give it values
        nn.init.normal_(model.text_decoder.text_projection, std=model.text_decoder.width**-0.5)
        return model
    if custom_text or hf_text:
        return RefCustomTextCLIP(**cfg)
    return RefCLIP(**cfg)


def pair(cfg: dict) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ref = reference_model(cfg)
    ours = build_model_from_config(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def trainable(model: nn.Module) -> dict[str, bool]:
    return {name: param.requires_grad for name, param in model.named_parameters()}


def module_kinds(model: nn.Module) -> dict[str, str]:
    """Where the batch norms are and whether they were frozen."""
    return {
        name: type(module).__name__
        for name, module in model.named_modules()
        if "BatchNorm" in type(module).__name__
    }


def assert_same_locking(ours: nn.Module, ref: nn.Module) -> None:
    assert trainable(ours) == trainable(ref)
    assert module_kinds(ours.visual) == module_kinds(ref.visual)
    ours_state, ref_state = ours.state_dict(), ref.state_dict()
    assert list(ours_state) == list(ref_state)
    for key in ref_state:
        torch.testing.assert_close(ours_state[key], ref_state[key])


@pytest.mark.parametrize("kind", ["vit", "coca"])
@pytest.mark.parametrize("unlocked_groups", [0, 1, 2, 3, 4, 5, 9])
def test_lock_image_tower_leaves_openclips_groups_trainable(kind: str, unlocked_groups: int) -> None:
    ours, ref = pair(CONFIGS[kind])
    ours.lock_image_tower(unlocked_groups=unlocked_groups)
    ref.visual.lock(
        unlocked_groups=unlocked_groups
    )  # OpenCLIP's CoCa has no lock_image_tower: the tower's own
    assert_same_locking(ours, ref)
    if 0 < unlocked_groups < 5:
        assert any(trainable(ours.visual).values()) and not all(trainable(ours.visual).values())


@pytest.mark.parametrize(
    ("kind", "unlocked_groups", "freeze_bn_stats"),
    [
        ("resnet", 0, True),
        ("resnet", 0, False),
        ("timm_resnet", 0, True),
        ("timm_resnet", 1, True),
        ("timm_resnet", 2, True),
        ("timm_resnet", 3, False),
        ("timm_convnext", 2, False),
    ],
)
def test_lock_image_tower_of_convnets_freezes_the_same_batch_norms(
    kind: str, unlocked_groups: int, freeze_bn_stats: bool
) -> None:
    ours, ref = pair(CONFIGS[kind])
    ours.lock_image_tower(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)
    ref.lock_image_tower(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)
    assert_same_locking(ours, ref)
    frozen = [k for k, v in module_kinds(ours.visual).items() if v == "FrozenBatchNorm2d"]
    assert bool(frozen) == (freeze_bn_stats and kind != "timm_convnext")


@pytest.mark.parametrize("kind", ["vit", "custom_text", "coca"])
@pytest.mark.parametrize("unlocked_layers", [0, 1, 2, 3, 4, 5, 9])
def test_lock_text_tower_leaves_openclips_groups_trainable(kind: str, unlocked_layers: int) -> None:
    ours, ref = pair(CONFIGS[kind])
    ours.lock_text_tower(unlocked_layers=unlocked_layers)
    ref_lock = getattr(ref, "lock_text_tower", None) or ref.text.lock  # OpenCLIP's CoCa lacks lock_text_tower
    ref_lock(unlocked_layers=unlocked_layers)
    assert_same_locking(ours, ref)
    # five groups: embeddings, blocks 0 and 1, block 2 + ln_final, projection
    assert any(not flag for flag in trainable(ours).values()) == (unlocked_layers < 5)


@pytest.mark.parametrize(
    ("unlocked_layers", "freeze_layer_norm"), [(0, True), (0, False), (2, True), (2, False)]
)
def test_lock_hf_text_tower_matches_openclip(
    tiny_roberta: dict, unlocked_layers: int, freeze_layer_norm: bool
) -> None:
    ours, ref = pair(tiny_roberta)
    ours.lock_text_tower(unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)
    ref.lock_text_tower(unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)
    assert trainable(ours) == trainable(ref)
    assert not all(trainable(ours.text).values())


def test_unlocking_layer_norms_of_a_native_text_tower_is_supported() -> None:
    """OpenCLIP asserts on freeze_layer_norm=False for native text towers (its issues #648, #1070)."""
    ours, _ = pair(CONFIGS["custom_text"])
    ours.lock_text_tower(unlocked_layers=1, freeze_layer_norm=False)
    flags = trainable(ours.text)
    norms = [n for n in flags if ".ln_" in f".{n}" or n.startswith("ln_final")]
    assert norms and all(flags[n] for n in norms)
    assert not flags["transformer.resblocks.0.attn.in_proj_weight"]
    assert flags["text_projection"]


def _loss(model: nn.Module, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    out = model(image, text)
    if isinstance(out, dict):
        loss = (out["image_features"] * out["text_features"]).sum()
        return loss + out["logits"].logsumexp(-1).mean() if "logits" in out else loss
    return (out[0] * out[1]).sum() * out[2]


def _grads(model: nn.Module, image: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    _loss(model, image, text).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _count_block_calls(model: nn.Module) -> list[int]:
    """Count calls of each tower's first block (its forward, which checkpointing re-runs in backward)."""
    calls = [0]
    for name, module in model.named_modules():
        if name.endswith(("resblocks.0", "cross_attn.0")):
            original = module.forward

            def counted(*args, _original=original, **kwargs):  # noqa: ANN002, ANN003, ANN202
                calls[0] += 1
                return _original(*args, **kwargs)

            module.forward = counted
    return calls


@pytest.mark.parametrize("kind", ["vit", "custom_text", "coca", "timm_convnext", "hf"])
def test_grad_checkpointing_recomputes_blocks_and_keeps_gradients(
    kind: str, request: pytest.FixtureRequest
) -> None:
    cfg = request.getfixturevalue("tiny_roberta") if kind == "hf" else CONFIGS[kind]
    ours, ref = pair(cfg)
    ours.train()
    ref.train()
    image = torch.randn(2, 3, *ours.visual.image_size)
    text = torch.randint(3, 60, (2, 8))
    text[0, 5:] = 1 if kind == "hf" else 0
    plain = _grads(ours, image, text)
    reference = _grads(ref, image, text)

    calls = _count_block_calls(ours)
    _loss(ours, image, text)
    calls_without = calls[0]
    ours.set_grad_checkpointing(True)
    ref.set_grad_checkpointing(True)
    checkpointed = _grads(ours, image, text)
    calls_with = calls[0] - calls_without

    assert set(checkpointed) == set(plain) == set(reference)
    for name in plain:
        atol = max(1e-5 * reference[name].abs().max().item(), 1e-6)  # float32 rounding at the tensor scale
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=atol, msg=name)
        torch.testing.assert_close(plain[name], reference[name], rtol=1e-5, atol=atol, msg=name)
    if kind == "hf":
        assert (
            getattr(ours.text.transformer, "is_activation_checkpointing", None)
            or ours.text.transformer.is_gradient_checkpointing
        )
    elif kind == "timm_convnext":
        assert all(stage.grad_checkpointing for stage in ours.visual.trunk.stages)
    else:
        assert calls_with > calls_without  # the blocks ran again in the backward pass
    ours.set_grad_checkpointing(False)
    assert not any(getattr(m, "grad_checkpointing", False) for m in ours.modules() if hasattr(m, "resblocks"))
