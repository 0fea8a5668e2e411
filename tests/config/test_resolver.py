import json

import pytest

from clipctl.config.resolver import resolve_model
from clipctl.errors import ClipctlError, UnknownNameError
from tests.helpers import TINY_VIT_CFG, add_to_hf_cache, write_model_config


def test_unknown_model_names_the_closest_known():
    with pytest.raises(UnknownNameError) as info:
        resolve_model("ViT-B-33")
    assert "ViT-B-32" in str(info.value) and "\n" not in str(info.value)


def test_unknown_tag_names_the_closest_tags():
    with pytest.raises(UnknownNameError) as info:
        resolve_model("ViT-B-32", "laion2b_s34b_b79")
    assert "laion2b_s34b_b79k" in str(info.value)


def test_tag_resolves_to_hub_weights_and_its_preprocessing():
    resolved = resolve_model("ViT-SO400M-14-SigLIP", "webli")
    assert resolved.weights.hf_repo_id == "timm/ViT-SO400M-14-SigLIP"
    assert resolved.preprocess_cfg["resize_mode"] == "squash"
    assert resolved.preprocess_cfg["mean"] == (0.5, 0.5, 0.5)
    assert resolved.preprocess_cfg["size"] == 224


def test_openai_tag_switches_on_quickgelu_instead_of_warning():
    resolved = resolve_model("ViT-B-32", "openai")
    assert resolved.quick_gelu and resolved.notes
    assert not resolve_model("ViT-B-32", "laion2b_s34b_b79k").quick_gelu


def test_local_weights_file_keeps_the_family_preprocessing(tmp_path):
    weights = tmp_path / "siglip.safetensors"
    weights.write_bytes(b"")
    resolved = resolve_model("ViT-SO400M-14-SigLIP", str(weights))
    assert resolved.weights.path == weights
    assert resolved.preprocess_cfg["resize_mode"] == "squash"  # OpenCLIP falls back to 'shortest' here


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ClipctlError, match="does not exist"):
        resolve_model("ViT-B-32", str(tmp_path / "nope.pt"))


def test_json_path_and_forced_overrides(tmp_path):
    path = write_model_config(tmp_path, "mine")
    resolved = resolve_model(str(path), force_image_size=48, force_context_length=8, force_quick_gelu=True)
    assert resolved.name == "mine"
    assert resolved.model_cfg["vision_cfg"]["image_size"] == 48 and resolved.preprocess_cfg["size"] == 48
    assert resolved.model_cfg["text_cfg"]["context_length"] == 8 and resolved.quick_gelu


def test_local_dir_reads_config_preprocess_and_weights(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": TINY_VIT_CFG,
                "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3, "resize_mode": "squash"},
            }
        )
    )
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"")
    resolved = resolve_model(f"local-dir:{tmp_path}")
    assert resolved.weights.path.name == "open_clip_pytorch_model.bin"
    assert resolved.preprocess_cfg["resize_mode"] == "squash" and resolved.preprocess_cfg["size"] == 32
    with pytest.raises(ClipctlError, match="does not apply"):
        resolve_model(f"local-dir:{tmp_path}", "openai")


def _config_only_folder(folder):
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_VIT_CFG}))
    return f"local-dir:{folder}"


def test_local_dir_without_weights_is_refused_unless_random_weights_are_asked_for(tmp_path):
    name = _config_only_folder(tmp_path)
    with pytest.raises(ClipctlError, match="holds no weights file.*--pretrained none"):
        resolve_model(name)
    for pretrained in ("none", "None", "NONE"):
        assert resolve_model(name, pretrained).weights is None
    trained = resolve_model(name, allow_random_weights=True)  # what train and distill ask for
    assert trained.weights is None and "random weights" in " ".join(trained.notes)


def test_pretrained_none_means_random_weights_for_every_kind_of_name(tmp_path):
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"")
    name = _config_only_folder(tmp_path)
    assert resolve_model(name).weights is not None
    for model in (name, "ViT-B-32", str(write_model_config(tmp_path / "cfg", "mine"))):
        resolved = resolve_model(model, "none")
        assert resolved.weights is None and resolved.pretrained is None


def test_hf_hub_config_read_from_the_offline_cache():
    add_to_hf_cache(
        "org/resolver-test",
        {
            "open_clip_config.json": json.dumps(
                {"model_cfg": TINY_VIT_CFG, "preprocess_cfg": {"interpolation": "bilinear"}}
            )
        },
    )
    resolved = resolve_model("hf-hub:org/resolver-test")
    assert resolved.model_cfg == TINY_VIT_CFG
    assert resolved.preprocess_cfg["interpolation"] == "bilinear"
    assert resolved.weights.hf_repo_id == "org/resolver-test"


def test_hf_hub_repo_not_in_the_offline_cache_says_which_repo_and_file():
    with pytest.raises(ClipctlError) as info:
        resolve_model("hf-hub:org/never-downloaded")
    message = str(info.value)
    assert (
        "org/never-downloaded" in message and "open_clip_config.json" in message and "pretrained" in message
    )
