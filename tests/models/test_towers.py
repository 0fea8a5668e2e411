"""Model behaviour that OpenCLIP users rely on: locking, grad checkpointing, logit scale/bias, class choice."""

from __future__ import annotations

import copy

import pytest
import torch

from clipctl.config import get_model_config
from clipctl.errors import ClipctlError
from clipctl.models import CLIP, CoCa, CustomTextCLIP, build_model_from_config
from clipctl.models.layers import LayerNormFp32, QuickGELU
from clipctl.models.precision import convert_weights_to_lp
from clipctl.runtime import get_cast_dtype, get_input_dtype


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small ops on a shared machine run many times faster on one thread than with OpenMP spinning on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(**top: object) -> dict:
    cfg = copy.deepcopy(get_model_config("tiny-ViT-8-64"))
    cfg["vision_cfg"]["layers"] = 2
    cfg["text_cfg"].update(layers=2, vocab_size=500)
    cfg.update(top)
    return cfg


def tiny_coca_cfg() -> dict:
    cfg = tiny_cfg(custom_text=True)
    cfg["vision_cfg"].update(
        attentional_pool=True, attn_pooler_heads=4, attn_pooler_queries=8, output_tokens=True
    )
    cfg["text_cfg"].update(context_length=12, embed_cls=True, output_tokens=True)
    cfg["multimodal_cfg"] = {"context_length": 12, "vocab_size": 500, "width": 128, "heads": 4, "layers": 2}
    return cfg


def test_class_choice_follows_custom_text_and_multimodal_cfg() -> None:
    assert type(build_model_from_config(tiny_cfg())) is CLIP
    assert type(build_model_from_config(tiny_cfg(custom_text=True))) is CustomTextCLIP
    assert type(build_model_from_config(tiny_coca_cfg())) is CoCa
    coca_without_custom_text = tiny_coca_cfg()
    coca_without_custom_text.pop("custom_text")
    coca_without_custom_text["text_cfg"].pop("embed_cls")
    coca_without_custom_text["text_cfg"].pop("output_tokens")
    assert type(build_model_from_config(coca_without_custom_text)) is CLIP


def test_text_keys_are_top_level_for_clip_and_under_text_for_custom_text() -> None:
    clip_keys = build_model_from_config(tiny_cfg()).state_dict()
    custom_keys = build_model_from_config(tiny_cfg(custom_text=True)).state_dict()
    assert "token_embedding.weight" in clip_keys and "text_projection" in clip_keys
    assert "text.token_embedding.weight" in custom_keys and "text.text_projection" in custom_keys
    assert "attn_mask" not in clip_keys


def test_model_kwargs_override_config_and_logit_bias_appears() -> None:
    model = build_model_from_config(tiny_cfg(), init_logit_bias=-10.0, init_logit_scale=1.5)
    assert model.logit_bias is not None and model.logit_bias.item() == -10.0
    assert model.logit_scale.shape == torch.Size([]) and model.logit_scale.item() == 1.5
    model.eval()
    out = model(torch.randn(2, 3, 64, 64), torch.randint(0, 500, (2, 32)))
    assert len(out) == 4 and out[3].item() == -10.0
    assert build_model_from_config(tiny_cfg()).logit_bias is None


def test_siglip_config_has_logit_bias_and_linear_text_projection() -> None:
    with torch.device("meta"):
        model = build_model_from_config(get_model_config("ViT-B-16-SigLIP"))
    assert model.logit_bias is not None
    keys = model.state_dict()
    assert "logit_bias" in keys and "text.text_projection.bias" in keys
    assert model.text.attn_mask is None  # bidirectional text encoder


def test_nonscalar_logit_scale_and_output_dict() -> None:
    model = build_model_from_config(tiny_cfg(), nonscalar_logit_scale=True, output_dict=True).eval()
    assert model.logit_scale.shape == torch.Size([1])
    out = model(torch.randn(1, 3, 64, 64), torch.randint(0, 500, (1, 32)))
    assert set(out) == {"image_features", "text_features", "logit_scale"}
    assert torch.allclose(out["image_features"].norm(dim=-1), torch.ones(1))


def test_get_logits_is_scaled_cosine_similarity() -> None:
    model = build_model_from_config(tiny_cfg()).eval()
    image, text = torch.randn(2, 3, 64, 64), torch.randint(0, 500, (3, 32))
    with torch.no_grad():
        image_logits, text_logits = model.get_logits(image, text)
        expected = model.logit_scale.exp() * model.encode_image(image, True) @ model.encode_text(text, True).T
    assert image_logits.shape == (2, 3)
    torch.testing.assert_close(image_logits, expected)
    torch.testing.assert_close(text_logits, expected.T)


@pytest.mark.parametrize("custom_text", [False, True])
def test_lock_text_tower_freezes_text_without_extra_flags(custom_text: bool) -> None:
    model = build_model_from_config(tiny_cfg(custom_text=custom_text))
    model.lock_text_tower()
    text_prefix = "text." if custom_text else ""
    text_names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    for name, param in model.named_parameters():
        is_text = name.startswith(tuple(text_prefix + n for n in text_names))
        assert param.requires_grad is (not is_text), name


def test_lock_text_tower_unlocked_layers_and_trainable_layer_norm() -> None:
    model = build_model_from_config(tiny_cfg())
    model.lock_text_tower(unlocked_layers=2, freeze_layer_norm=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "text_projection" in trainable and "ln_final.weight" in trainable
    assert "transformer.resblocks.1.mlp.c_fc.weight" in trainable
    assert "transformer.resblocks.0.mlp.c_fc.weight" not in trainable
    assert "transformer.resblocks.0.ln_1.weight" in trainable  # freeze_layer_norm=False keeps norms trainable
    assert "token_embedding.weight" not in trainable


def test_lock_image_tower_unlocked_groups() -> None:
    model = build_model_from_config(tiny_cfg())
    model.lock_image_tower(unlocked_groups=0)
    assert not any(p.requires_grad for p in model.visual.parameters())
    model.lock_image_tower(unlocked_groups=2)
    trainable = {n for n, p in model.visual.named_parameters() if p.requires_grad}
    assert "proj" in trainable and "ln_post.weight" in trainable
    assert "transformer.resblocks.1.attn.in_proj_weight" in trainable
    assert "transformer.resblocks.0.attn.in_proj_weight" not in trainable
    assert "conv1.weight" not in trainable
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("visual."))


def test_lock_resnet_image_tower_freezes_batch_norm_stats() -> None:
    cfg = tiny_cfg()
    cfg["vision_cfg"] = {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 8}
    model = build_model_from_config(cfg)
    model.lock_image_tower(freeze_bn_stats=True)
    assert not any(p.requires_grad for p in model.visual.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.visual.modules())
    with pytest.raises(ClipctlError):
        model.lock_image_tower(unlocked_groups=1)


@pytest.mark.parametrize("builder", [tiny_cfg, tiny_coca_cfg])
def test_grad_checkpointing_gives_same_outputs_and_grads(builder) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model_from_config(builder()).train()
    image, text = torch.randn(2, 3, 64, 64), torch.randint(1, 500, (2, model.context_length))

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        out = model(image, text)
        feats = (out["image_features"], out["text_features"]) if isinstance(out, dict) else out[:2]
        loss = (feats[0] * feats[1]).sum()
        if isinstance(out, dict) and "logits" in out:
            loss = loss + out["logits"].mean()
        loss.backward()
        grad = model.visual.transformer.resblocks[0].attn.in_proj_weight.grad.clone()
        return loss.detach(), grad

    plain = run()
    model.set_grad_checkpointing(True)
    assert model.visual.transformer.grad_checkpointing
    checkpointed = run()
    torch.testing.assert_close(checkpointed[0], plain[0])
    torch.testing.assert_close(checkpointed[1], plain[1])


def test_quick_gelu_flag_selects_quick_gelu() -> None:
    model = build_model_from_config(tiny_cfg(quick_gelu=True))
    assert any(isinstance(m, QuickGELU) for m in model.modules())
    assert not any(isinstance(m, QuickGELU) for m in build_model_from_config(tiny_cfg()).modules())
    assert any(
        isinstance(m, QuickGELU) for m in build_model_from_config(tiny_cfg(), quick_gelu=True).modules()
    )


def test_low_precision_build_keeps_layer_norm_in_fp32() -> None:
    model = build_model_from_config(tiny_cfg(), cast_dtype=torch.bfloat16).eval()
    assert model.visual.conv1.weight.dtype == torch.bfloat16
    assert model.text_projection.dtype == torch.bfloat16
    assert isinstance(model.ln_final, LayerNormFp32) and model.ln_final.weight.dtype == torch.float32
    with torch.no_grad():
        feats = model.encode_image(torch.randn(1, 3, 64, 64, dtype=torch.bfloat16))
    assert feats.dtype == torch.bfloat16 and torch.isfinite(feats.float()).all()
    assert (
        convert_weights_to_lp(build_model_from_config(tiny_cfg()), torch.float16).visual.proj.dtype
        == torch.float16
    )
    assert get_cast_dtype("fp16") == torch.float16 and get_cast_dtype("amp") is None
    assert get_input_dtype("pure_bf16") == torch.bfloat16 and get_input_dtype("fp32") is None
    with pytest.raises(ClipctlError):
        get_cast_dtype("fp8")


def test_bad_configs_give_one_line_errors() -> None:
    cfg = tiny_cfg()
    cfg["vision_cfg"]["not_a_key"] = 1
    with pytest.raises(ClipctlError, match="not_a_key"):
        build_model_from_config(cfg)
    cfg = tiny_cfg()
    cfg["text_cfg"]["qk_norm"] = True
    with pytest.raises(ClipctlError, match="qk_norm"):
        build_model_from_config(cfg)
    with pytest.raises(ClipctlError, match="embed_dim"):
        build_model_from_config({"vision_cfg": {}, "text_cfg": {}})
    cfg = tiny_cfg()
    cfg["vision_cfg"] = {"timm_model_name": "no_such_timm_model", "image_size": 64}
    with pytest.raises(ClipctlError, match="no_such_timm_model"):
        build_model_from_config(cfg)


def test_hf_text_tower_reports_missing_cached_config() -> None:
    with pytest.raises(ClipctlError, match="local Hugging Face cache"):
        build_model_from_config(get_model_config("roberta-ViT-B-32"))


def test_no_weight_decay_and_image_size_attribute() -> None:
    model = build_model_from_config(tiny_cfg())
    assert {
        "positional_embedding",
        "visual.positional_embedding",
        "visual.class_embedding",
    } <= model.no_weight_decay()
    assert model.visual.image_size == (64, 64)
    assert model.context_length == 32 and model.vocab_size == 500


def _record_output_shapes(block: torch.nn.Module) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    original = block.forward

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = original(*args, **kwargs)
        shapes.append(tuple(out.shape))
        return out

    block.forward = recording
    return shapes


def test_last_block_computes_only_the_pooled_token_unless_tokens_or_hooks_need_all() -> None:
    torch.manual_seed(0)
    model = build_model_from_config(tiny_cfg()).eval()
    image, text = torch.randn(2, 3, 64, 64), torch.randint(1, 500, (2, 32))
    vision_shapes = _record_output_shapes(model.visual.transformer.resblocks[-1])
    text_shapes = _record_output_shapes(model.transformer.resblocks[-1])
    with torch.no_grad():
        image_features, text_features = model.encode_image(image), model.encode_text(text)
    assert vision_shapes == [(2, 1, 128)] and text_shapes == [(2, 1, 128)]

    seen: list[tuple[int, ...]] = []
    for block in (model.visual.transformer.resblocks[-1], model.transformer.resblocks[-1].mlp):
        block.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(image), image_features)
        torch.testing.assert_close(model.encode_text(text), text_features)
    assert seen == [(2, 65, 128), (2, 32, 128)]  # hooks see every token

    cfg = tiny_cfg()
    cfg["vision_cfg"]["output_tokens"] = True
    with_tokens = build_model_from_config(cfg).eval()
    with_tokens.load_state_dict(model.state_dict())
    with torch.no_grad():
        pooled, tokens = with_tokens.visual(image)
    assert tokens.shape == (2, 64, 128)
    torch.testing.assert_close(pooled, image_features)
