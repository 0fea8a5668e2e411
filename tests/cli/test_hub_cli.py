"""`clipctl push-to-hub` wiring: --local-dir, the upload flags reaching HfApi, one-line errors."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import clipctl
from clipctl.cli.app import build_app
from clipctl.cli.main import main
from clipctl.hub import push as hub_push
from tests.helpers import assert_user_error
from tests.hub.hub_helpers import FakeHfApi, folder_digest, other_cfg, tiny_model_with_weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_with_weights(tmp_path_factory.mktemp("tiny"))


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_local_dir_writes_a_folder_that_loads_back(tiny, tmp_path):
    config, weights, state_dict = tiny
    out = tmp_path / "model"
    result = CliRunner().invoke(
        build_app(),
        ["push-to-hub", "--model", config, "--pretrained", str(weights), "--local-dir", str(out), "--bin"],
    )
    assert result.exit_code == 0, result.output
    assert "open_clip_model.safetensors" in result.output and f"local-dir:{out}" in result.output
    assert (out / "open_clip_pytorch_model.bin").is_file()
    model, _, _ = clipctl.create_model_and_transforms(f"local-dir:{out}")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state_dict.items())


def test_upload_flags_reach_the_hub_client(tiny, monkeypatch, capsys):
    config, weights, _ = tiny
    api = FakeHfApi()
    monkeypatch.setattr(hub_push, "_default_api", lambda: api)
    secret = "hf_" + "N0tPr1nt3d" * 3
    monkeypatch.setenv("HF_TOKEN", secret)
    code, out, err = run(
        capsys,
        "push-to-hub",
        "--model",
        config,
        "--pretrained",
        str(weights),
        "--repo-id",
        "org/tiny-clip",
        "--private",
        "--revision",
        "dev",
        "--commit-message",
        "Upload tiny",
    )
    assert code == 0, err
    assert api.call("create_repo")[1]["private"] is True
    _, kwargs = api.call("upload_folder")
    assert kwargs["revision"] == "dev" and kwargs["commit_message"] == "Upload tiny"
    assert sorted(api.uploaded) == ["README.md", "open_clip_config.json", "open_clip_model.safetensors"]
    assert "org/tiny-clip@dev" in out and "(private)" in out
    assert secret not in out + err


@pytest.mark.parametrize("repo_id", ["org/my model", "org/mödel", "org/a/b"])
def test_bad_repo_id_is_one_line_exit_2(tiny, repo_id, monkeypatch, capsys):
    config, weights, _ = tiny
    monkeypatch.setattr(hub_push, "_default_api", lambda: pytest.fail("no Hub client before validation"))
    code, _, err = run(
        capsys, "push-to-hub", "--model", config, "--pretrained", str(weights), "--repo-id", repo_id
    )
    assert code == 2
    assert "repo-id" in assert_user_error(err) and "Traceback" not in err


def test_repo_id_is_required_without_local_dir(tiny, capsys):
    config, weights, _ = tiny
    code, _, err = run(capsys, "push-to-hub", "--model", config, "--pretrained", str(weights))
    assert code == 2 and "--repo-id is required" in assert_user_error(err)


def test_folder_of_another_model_is_refused(tiny, tmp_path, capsys):
    config, weights, _ = tiny
    out = tmp_path / "model"
    assert (
        run(capsys, "push-to-hub", "--model", config, "--pretrained", str(weights), "--local-dir", str(out))[
            0
        ]
        == 0
    )
    before = folder_digest(out)
    other_config, other_weights, _ = tiny_model_with_weights(tmp_path / "other", "tiny-other", other_cfg())
    argv = [
        "push-to-hub",
        "--model",
        other_config,
        "--pretrained",
        str(other_weights),
        "--local-dir",
        str(out),
    ]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--overwrite" in assert_user_error(err)
    assert folder_digest(out) == before
    assert run(capsys, *argv, "--overwrite")[0] == 0


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = run(
        capsys,
        "push-to-hub",
        "--model",
        "tiny-ViT-8-64",
        "--pretrained",
        str(tmp_path / "nope.pt"),
        "--local-dir",
        str(tmp_path / "out"),
    )
    assert code == 2 and "does not exist" in assert_user_error(err)
    assert not (tmp_path / "out").exists()
