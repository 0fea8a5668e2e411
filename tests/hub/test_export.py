"""The Hub layout written by push-to-hub: round trips through clipctl and OpenCLIP, folder ownership, model card."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import clipctl
from clipctl.errors import ClipctlError
from clipctl.hub import export as hub_export
from clipctl.hub.export import export_to_folder
from tests.hub.hub_helpers import folder_digest, other_cfg, tiny_model_with_weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_with_weights(tmp_path_factory.mktemp("tiny"))


def _front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_local_dir_round_trips_weights_bit_for_bit(tiny, tmp_path):
    config, weights, state_dict = tiny
    out = tmp_path / "model"
    result = export_to_folder(config, str(weights), out)
    assert result.files == ["README.md", "open_clip_config.json", "open_clip_model.safetensors"]

    written = json.loads((out / "open_clip_config.json").read_text())
    assert set(written) == {"model_cfg", "preprocess_cfg"}
    assert written["model_cfg"] == json.loads(open(config).read())
    assert set(written["preprocess_cfg"]) == {"mean", "std", "interpolation", "resize_mode"}

    model, _, preprocess = clipctl.create_model_and_transforms(f"local-dir:{out}")
    loaded = model.state_dict()
    assert loaded.keys() == state_dict.keys()
    for key, tensor in state_dict.items():
        assert torch.equal(loaded[key], tensor), key
    assert preprocess is not None


def test_openclip_loads_the_layout_with_the_same_weights_and_outputs(tiny, tmp_path):
    open_clip = pytest.importorskip("open_clip")
    config, weights, state_dict = tiny
    out = tmp_path / "model"
    export_to_folder(config, str(weights), out)

    ref, _, ref_preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    ours, _, our_preprocess = clipctl.create_model_and_transforms(f"local-dir:{out}")
    ref_sd = ref.state_dict()
    assert ref_sd.keys() == state_dict.keys()
    assert all(torch.equal(ref_sd[k], v) for k, v in state_dict.items())

    from PIL import Image

    image = Image.new("RGB", (40, 50), (200, 30, 90))
    torch.testing.assert_close(our_preprocess(image), ref_preprocess(image))
    text = clipctl.get_tokenizer(f"local-dir:{out}")(["a photo of a cat"])
    assert torch.equal(text, open_clip.get_tokenizer(f"local-dir:{out}")(["a photo of a cat"]))
    pixels = our_preprocess(image)[None]
    with torch.no_grad():
        torch.testing.assert_close(ours.eval().encode_image(pixels), ref.eval().encode_image(pixels))
        torch.testing.assert_close(ours.encode_text(text), ref.encode_text(text))


def test_bin_is_optional_and_loads_on_its_own(tiny, tmp_path):
    config, weights, state_dict = tiny
    out = tmp_path / "model"
    result = export_to_folder(config, str(weights), out, write_bin=True)
    assert "open_clip_pytorch_model.bin" in result.files
    (out / "open_clip_model.safetensors").unlink()
    loaded = clipctl.create_model(f"local-dir:{out}").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items())


def test_folder_of_another_model_is_refused_unless_overwrite(tiny, tmp_path):
    config, weights, _ = tiny
    out = tmp_path / "model"
    export_to_folder(config, str(weights), out, write_bin=True)
    before = folder_digest(out)

    other_config, other_weights, other_sd = tiny_model_with_weights(
        tmp_path / "other", "tiny-other", other_cfg()
    )
    with pytest.raises(ClipctlError, match="another model.*--overwrite"):
        export_to_folder(other_config, str(other_weights), out)
    assert folder_digest(out) == before  # nothing already written is lost

    export_to_folder(other_config, str(other_weights), out, overwrite=True)
    assert json.loads((out / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"] == 16
    assert not (out / "open_clip_pytorch_model.bin").exists()  # the old model's weights are gone
    loaded = clipctl.create_model(f"local-dir:{out}").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in other_sd.items())


def test_same_model_is_updated_in_place_without_stale_weights(tiny, tmp_path):
    config, weights, _ = tiny
    out = tmp_path / "model"
    export_to_folder(config, str(weights), out, write_bin=True)
    _, newer_weights, newer_sd = tiny_model_with_weights(tmp_path / "newer", "tiny-hub", seed=1)
    result = export_to_folder(config, str(newer_weights), out)  # same architecture: no --overwrite needed
    assert "open_clip_pytorch_model.bin" not in result.files
    assert not (out / "open_clip_pytorch_model.bin").exists()
    loaded = clipctl.create_model(f"local-dir:{out}").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in newer_sd.items())


def test_non_model_folder_is_refused_but_hidden_files_do_not_count(tiny, tmp_path):
    config, weights, _ = tiny
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ClipctlError, match="not empty"):
        export_to_folder(config, str(weights), busy)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]

    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    (clone / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    export_to_folder(config, str(weights), clone)
    assert (clone / ".gitattributes").read_text() == "*.safetensors filter=lfs\n"
    assert (clone / "open_clip_model.safetensors").is_file()


def test_hand_written_readme_is_kept_generated_one_is_refreshed(tiny, tmp_path):
    config, weights, _ = tiny
    out = tmp_path / "model"
    export_to_folder(config, str(weights), out)
    assert hub_export.CARD_MARKER in (out / "README.md").read_text()
    (out / "README.md").write_text("# my own card\n")
    result = export_to_folder(config, str(weights), out)
    assert result.kept_readme and (out / "README.md").read_text() == "# my own card\n"
    export_to_folder(config, str(weights), out, overwrite=True)
    assert hub_export.CARD_MARKER in (out / "README.md").read_text()


def test_interrupted_export_leaves_no_partial_folder(tiny, tmp_path, monkeypatch):
    config, weights, _ = tiny

    def crash(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hub_export, "_write_json", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_to_folder(config, str(weights), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the staging folder


def test_model_card_front_matter_and_usage(tiny, tmp_path):
    config, weights, _ = tiny
    out = tmp_path / "model"
    export_to_folder(config, str(weights), out, repo_id="org/tiny-clip", license="apache-2.0")
    readme = (out / "README.md").read_text()
    meta = _front_matter(readme)
    assert meta["library_name"] == "open_clip"
    assert meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "zero-shot-image-classification"
    assert "clip" in meta["tags"]
    assert "# Model card for tiny-clip" in readme
    assert "`tiny-hub`" in readme and f"`{weights.name}`" in readme
    assert 'clipctl.create_model_and_transforms("hf-hub:org/tiny-clip")' in readme
    assert 'open_clip.create_model_and_transforms("hf-hub:org/tiny-clip")' in readme
    assert "## Training" not in readme  # not from a clipctl run


def test_checkpoint_of_a_clipctl_run_carries_its_training_config(tmp_path):
    from clipctl.config.run import TrainConfig, dump_run_config

    run = tmp_path / "runs" / "tiny-run"
    (run / "checkpoints").mkdir(parents=True)
    config, _, _ = tiny_model_with_weights(tmp_path, "tiny-run-arch")
    cfg = TrainConfig(
        model=config,
        name="tiny-run",
        train_data="synthetic",
        epochs=3,
        force_quick_gelu=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        image_resize_mode="squash",
    )
    (run / "config.yaml").write_text(dump_run_config(cfg))
    model = clipctl.create_model(config, force_quick_gelu=True)
    ckpt = run / "checkpoints" / "epoch_2.pt"
    torch.save({"epoch": 2, "name": "tiny-run", "state_dict": model.state_dict()}, ckpt)

    out = tmp_path / "published"
    result = export_to_folder(None, str(ckpt), out)  # --model comes from the run's config.yaml
    written = json.loads((out / "open_clip_config.json").read_text())
    assert written["model_cfg"]["quick_gelu"] is True
    assert written["preprocess_cfg"]["mean"] == [0.5, 0.5, 0.5]
    assert written["preprocess_cfg"]["resize_mode"] == "squash"
    readme = (out / "README.md").read_text()
    assert "## Training" in readme and "`tiny-run`" in readme and "2 of 3" in readme
    assert "force_quick_gelu: true" in readme and "train_data: synthetic" in readme
    assert result.model_name == "tiny-run-arch"
    loaded = clipctl.create_model(f"local-dir:{out}")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_no_weights_is_refused(tmp_path):
    with pytest.raises(ClipctlError, match="no weights to publish"):
        export_to_folder("tiny-ViT-8-64", None, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_hf_text_tower_writes_its_tokenizer_files(tmp_path):
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the", "cat", "dog", "."]
    bert = tmp_path / "tiny-bert"
    bert.mkdir()
    transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    ).save_pretrained(bert)
    (bert / "vocab.txt").write_text("\n".join(words) + "\n")
    (bert / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 16})
    )
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {
            "hf_model_name": str(bert),
            "hf_tokenizer_name": str(bert),
            "hf_proj_type": "linear",
            "hf_pooler_type": "cls_pooler",
            "context_length": 8,
        },
    }
    config, weights, state_dict = tiny_model_with_weights(tmp_path, "tiny-hf-text", cfg)
    expected = clipctl.get_tokenizer(config)(["a photo of the cat."])

    out = tmp_path / "model"
    result = export_to_folder(config, str(weights), out)
    assert "tokenizer_config.json" in result.files
    # The folder's own tokenizer is used: the original tokenizer files can go.
    (bert / "vocab.txt").unlink()
    (bert / "tokenizer_config.json").unlink()
    assert torch.equal(clipctl.get_tokenizer(f"local-dir:{out}")(["a photo of the cat."]), expected)
    loaded = clipctl.create_model(f"local-dir:{out}").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items())
