"""The upload path of push-to-hub, against a fake HfApi (no network)."""

from __future__ import annotations

import io

import pytest
import torch
from safetensors.torch import load

from clipctl.errors import ClipctlError, RunFailure
from clipctl.hub import push as hub_push
from clipctl.hub.push import push_to_hub, validate_repo_id
from tests.hub.hub_helpers import FakeHfApi, tiny_model_with_weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_with_weights(tmp_path_factory.mktemp("tiny"))


def test_upload_sends_the_layout_with_private_revision_and_message(tiny):
    config, weights, state_dict = tiny
    api = FakeHfApi()
    result = push_to_hub(
        config,
        str(weights),
        "org/tiny-clip",
        private=True,
        revision="v1",
        commit_message="First upload",
        write_bin=True,
        api=api,
    )
    args, kwargs = api.call("create_repo")
    assert args == ("org/tiny-clip",) and kwargs["private"] is True and kwargs["exist_ok"] is True
    args, kwargs = api.call("create_branch")
    assert args == ("org/tiny-clip",) and kwargs["branch"] == "v1"
    _, kwargs = api.call("upload_folder")
    assert kwargs["repo_id"] == "org/tiny-clip"
    assert kwargs["revision"] == "v1" and kwargs["commit_message"] == "First upload"
    assert sorted(api.uploaded) == [
        "README.md",
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.bin",
    ]
    uploaded = load(api.uploaded["open_clip_model.safetensors"])
    assert uploaded.keys() == state_dict.keys()
    assert all(torch.equal(uploaded[k], v) for k, v in state_dict.items())
    from_bin = torch.load(io.BytesIO(api.uploaded["open_clip_pytorch_model.bin"]), weights_only=True)
    assert all(torch.equal(from_bin[k], v) for k, v in state_dict.items())
    assert set(api.uploaded_config()) == {"model_cfg", "preprocess_cfg"}
    assert b'create_model_and_transforms("hf-hub:org/tiny-clip")' in api.uploaded["README.md"]
    assert result.repo_id == "org/tiny-clip" and result.private and result.revision == "v1"
    assert "commit" in result.url


def test_defaults_public_main_and_namespace_from_the_hub(tiny):
    config, weights, _ = tiny
    api = FakeHfApi(namespace="alice")
    result = push_to_hub(config, str(weights), "tiny-clip", api=api)
    assert api.call("create_repo")[1]["private"] is False
    assert not [c for c in api.calls if c[0] == "create_branch"]
    _, kwargs = api.call("upload_folder")
    assert kwargs["repo_id"] == "alice/tiny-clip" and kwargs["revision"] is None
    assert kwargs["commit_message"] == "Add model"
    assert sorted(api.uploaded) == ["README.md", "open_clip_config.json", "open_clip_model.safetensors"]
    assert result.repo_id == "alice/tiny-clip"


def test_a_readme_already_on_the_hub_is_kept_unless_overwrite(tiny):
    config, weights, _ = tiny
    api = FakeHfApi(readme_exists=True)
    result = push_to_hub(config, str(weights), "org/tiny-clip", api=api)
    assert "README.md" not in api.uploaded and result.kept_readme
    api = FakeHfApi(readme_exists=True)
    push_to_hub(config, str(weights), "org/tiny-clip", api=api, overwrite=True)
    assert "README.md" in api.uploaded


@pytest.mark.parametrize(
    "repo_id",
    ["org/bad name", "org/näme", "a/b/c", "org/-name", "org/name.", "org/na--me", "org/", "org/x;rm -rf", ""],
)
def test_bad_repo_ids_are_refused_before_any_work(tiny, repo_id, monkeypatch):
    config, weights, _ = tiny

    def no_work(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the repo id was checked")

    monkeypatch.setattr(hub_push, "plan_model", no_work)
    api = FakeHfApi()
    with pytest.raises(ClipctlError) as info:
        push_to_hub(config, str(weights), repo_id, api=api)
    assert "\n" not in str(info.value) and "repo-id" in str(info.value)
    assert api.calls == []


@pytest.mark.parametrize("repo_id", ["org/name", "name", "Org_1/my.model-v2", "a" * 96])
def test_good_repo_ids_pass(repo_id):
    assert validate_repo_id(repo_id) == repo_id


def test_upload_errors_are_one_line_and_never_show_the_token(tiny, monkeypatch):
    config, weights, _ = tiny
    secret = "hf_" + "S3cr3tT0k3n" * 3
    monkeypatch.setenv("HF_TOKEN", secret)
    api = FakeHfApi(fail_upload=RuntimeError(f"401 Unauthorized for token {secret}\nmore detail"))
    with pytest.raises(RunFailure) as info:
        push_to_hub(config, str(weights), "org/tiny-clip", api=api)
    message = str(info.value)
    assert secret not in message and "\n" not in message and "401 Unauthorized" in message


def test_real_api_needs_the_network_and_a_token(monkeypatch):
    # The test session runs with HF_HUB_OFFLINE=1: refused before anything is loaded.
    with pytest.raises(ClipctlError, match="HF_HUB_OFFLINE"):
        push_to_hub("tiny-ViT-8-64", "unused.pt", "org/name")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(ClipctlError, match="no Hugging Face token"):
        push_to_hub("tiny-ViT-8-64", "unused.pt", "org/name")
