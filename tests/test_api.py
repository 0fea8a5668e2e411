"""The Python API end to end: OpenCLIP-made weights load strictly into clipctl and give OpenCLIP's numbers."""

import json

import open_clip
import pytest
import torch
from PIL import Image

import clipctl
from clipctl.errors import ClipctlError, UnknownNameError
from tests.helpers import TINY_VIT_CFG, add_to_hf_cache, write_model_config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny OpenCLIP model with random weights, and its config file."""
    folder = tmp_path_factory.mktemp("cfg")
    config = write_model_config(folder, "tiny-api")
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-api", pretrained=None).eval()
    return model, config


def _inputs(model):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    texts = open_clip.get_tokenizer("tiny-api")(["a photo of a cat", "two dogs"])
    return images, texts


def _assert_same_features(ours, theirs):
    images, texts = _inputs(theirs)
    with torch.no_grad():
        torch.testing.assert_close(
            ours.encode_image(images), theirs.encode_image(images), rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(ours.encode_text(texts), theirs.encode_text(texts), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["pt", "training", "ddp", "safetensors"])
def test_openclip_weights_load_strictly_in_every_file_format(tmp_path, reference, fmt):
    theirs, config = reference
    state = theirs.state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "safetensors":
        clipctl.checkpoint.save_safetensors_atomic(state, path)
    elif fmt == "training":
        torch.save({"epoch": 2, "name": "x", "state_dict": state, "optimizer": {}}, path)
    elif fmt == "ddp":
        torch.save({"epoch": 2, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)
    ours = clipctl.create_model(str(config), pretrained=str(path)).eval()
    _assert_same_features(ours, theirs)


def test_transforms_follow_the_preprocessing_of_openclip(tmp_path, reference):
    theirs, config = reference
    torch.save(theirs.state_dict(), tmp_path / "w.pt")
    _, _, ours_val = clipctl.create_model_and_transforms(str(config), pretrained=str(tmp_path / "w.pt"))
    _, _, theirs_val = open_clip.create_model_and_transforms("tiny-api")
    image = Image.new("RGB", (61, 40), (200, 30, 90))
    assert torch.equal(ours_val(image), theirs_val(image))


def test_hf_hub_model_loads_from_the_offline_cache(reference, tmp_path):
    theirs, _ = reference
    weights = clipctl.checkpoint.save_safetensors_atomic(
        theirs.state_dict(), tmp_path / "w.safetensors"
    ).read_bytes()
    hub_cfg = {"model_cfg": TINY_VIT_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    add_to_hf_cache(
        "test-org/tiny-clip",
        {"open_clip_config.json": json.dumps(hub_cfg), "open_clip_model.safetensors": weights},
    )
    ours, _, preprocess = clipctl.create_model_and_transforms("hf-hub:test-org/tiny-clip")
    _assert_same_features(ours.eval(), theirs)
    assert ours.visual.preprocess_cfg["mean"] == (0.5, 0.5, 0.5)
    assert preprocess.transforms[-1].mean == (0.5, 0.5, 0.5)


def test_missing_hub_weights_offline_names_repo_and_file():
    add_to_hf_cache(
        "test-org/config-only", {"open_clip_config.json": json.dumps({"model_cfg": TINY_VIT_CFG})}
    )
    with pytest.raises(ClipctlError) as info:
        clipctl.create_model("hf-hub:test-org/config-only")
    assert "open_clip_model.safetensors or open_clip_pytorch_model.bin" in str(info.value)
    assert "test-org/config-only" in str(info.value)


def test_tag_without_cached_weights_offline_is_a_clear_error():
    with pytest.raises(ClipctlError, match="laion/CLIP-ViT-B-32-laion2B-s34B-b79K"):
        clipctl.create_model("ViT-B-32", pretrained="laion2b_s34b_b79k")


def test_checkpoint_for_another_architecture_names_the_keys(tmp_path):
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(1)}, tmp_path / "rn.pt")
    with pytest.raises(ClipctlError, match="visual.layer1.0.conv1.weight"):
        clipctl.create_model("tiny-ViT-8-64", pretrained=str(tmp_path / "rn.pt"))


def test_require_pretrained_and_unknown_names():
    with pytest.raises(ClipctlError, match="needs pretrained weights"):
        clipctl.create_model_from_pretrained("tiny-ViT-8-64")
    with pytest.raises(UnknownNameError, match="tiny-ViT-8-64"):
        clipctl.create_model("tiny-ViT-8-46")
    with pytest.raises(UnknownNameError):
        clipctl.get_tokenizer("no-such-model")  # OpenCLIP silently returns a default tokenizer


def test_precision_bf16_casts_weights_and_keeps_features_close(reference, tmp_path):
    theirs, config = reference
    torch.save(theirs.state_dict(), tmp_path / "w.pt")
    ours = clipctl.create_model(str(config), pretrained=str(tmp_path / "w.pt"), precision="bf16").eval()
    assert ours.visual.conv1.weight.dtype == torch.bfloat16
    images, _ = _inputs(theirs)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(
            ours.encode_image(images.bfloat16()).float(), theirs.encode_image(images)
        )
    assert cos.min() > 0.99


def test_force_image_size_resizes_the_position_embedding_like_openclip(reference, tmp_path):
    theirs, config = reference
    torch.save(theirs.state_dict(), tmp_path / "w.pt")
    ours = clipctl.create_model(str(config), pretrained=str(tmp_path / "w.pt"), force_image_size=48)
    resized = open_clip.create_model("tiny-api", pretrained=str(tmp_path / "w.pt"), force_image_size=48)
    assert ours.visual.positional_embedding.shape == (37, 64)
    torch.testing.assert_close(ours.visual.positional_embedding, resized.visual.positional_embedding)
    assert ours.visual.preprocess_cfg["size"] in (48, (48, 48))


def test_get_tokenizer_uses_the_model_context_length(reference):
    _, config = reference
    tokens = clipctl.get_tokenizer(str(config))(["hello world"])
    assert tokens.shape == (1, 16)
    assert clipctl.get_tokenizer("coca_ViT-B-32")(["x"]).shape == (1, 76)
