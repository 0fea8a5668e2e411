import json

from clipctl.config import registry
from clipctl.config.pretrained import get_pretrained_cfg, list_pretrained, list_pretrained_tags_by_model

REQUIRED = """RN50 RN101 RN50x4 RN50x16 RN50x64 ViT-S-16 ViT-S-32 ViT-M-16 ViT-M-32 ViT-B-32 ViT-B-32-256 ViT-B-16
ViT-B-16-plus-240 ViT-L-14 ViT-L-14-336 ViT-H-14 ViT-H-14-378 ViT-g-14 ViT-bigG-14 convnext_base convnext_base_w
convnext_base_w_320 convnext_large_d convnext_large_d_320 convnext_xxlarge convnext_xxlarge_320 ViT-B-16-SigLIP
ViT-SO400M-14-SigLIP ViT-SO400M-14-SigLIP-384 coca_base coca_ViT-B-32 coca_ViT-L-14 roberta-ViT-B-32
xlm-roberta-base-ViT-B-32""".split()


def test_every_required_architecture_and_its_quickgelu_twin_is_registered():
    names = set(registry.list_models())
    missing = [n for n in REQUIRED if n not in names]
    assert not missing
    for name in REQUIRED:
        cfg = registry.get_model_config(name)
        if "hf_model_name" not in cfg["text_cfg"]:
            assert registry.get_model_config(f"{name}-quickgelu")["quick_gelu"] is True


def test_openai_slash_spelling_and_deep_copies():
    cfg = registry.get_model_config("ViT-B/32")
    assert cfg["vision_cfg"]["patch_size"] == 32
    cfg["vision_cfg"]["patch_size"] = 1
    assert registry.get_model_config("ViT-B-32")["vision_cfg"]["patch_size"] == 32
    assert registry.get_model_config("no-such-model") is None


def test_add_model_config_file_and_folder(tmp_path):
    cfg = {"embed_dim": 8, "vision_cfg": {"layers": 1}, "text_cfg": {"layers": 1}}
    (tmp_path / "my-arch.json").write_text(json.dumps(cfg))
    (tmp_path / "not-a-model.json").write_text(json.dumps({"foo": 1}))
    registry.add_model_config(tmp_path)
    try:
        assert registry.get_model_config("my-arch") == cfg
        assert "not-a-model" not in registry.list_models()
    finally:
        registry._search_paths.remove(tmp_path)
        registry._rescan()


def test_seed_tags_carry_hub_ids_and_their_preprocessing():
    assert (
        get_pretrained_cfg("convnext_base_w", "laion2b_s13b_b82k")["hf_hub_id"]
        == "laion/CLIP-convnext_base_w-laion2B-s13B-b82K"
    )
    assert get_pretrained_cfg("ViT-L-14", "laion2b-s32b-b82k")["mean"] == [
        0.5,
        0.5,
        0.5,
    ]  # tag names are cleaned
    siglip = get_pretrained_cfg("ViT-SO400M-14-SigLIP", "webli")
    assert siglip["resize_mode"] == "squash" and siglip["std"] == [0.5, 0.5, 0.5]
    assert get_pretrained_cfg("ViT-B-32", "openai")["quick_gelu"] is True
    assert "laion2b_s32b_b79k" in list_pretrained_tags_by_model("ViT-H-14")
    assert all(m in registry.list_models() for m, _ in list_pretrained())
    assert all(get_pretrained_cfg(m, t).get("hf_hub_id") for m, t in list_pretrained())
