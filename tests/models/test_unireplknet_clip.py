"""UniRepLKNet as a CLIP image tower, end to end: configs, create_model(reparameterize=True), the checkpoint hook
and `clipctl export`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import clipctl
from clipctl.cli.main import main
from clipctl.models import unireplknet as urlk

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {
        "timm_model_name": "unireplknet_a",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "timm_drop": 0.0,
        "timm_drop_path": 0.1,
        "image_size": 64,
    },
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny-unireplknet.json"
    path.write_text(json.dumps(TINY_CFG))
    return str(path)


@torch.no_grad()
def _randomize(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point() or name.endswith("logit_scale"):
            continue
        if name.endswith("running_var"):
            tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
        elif tensor.dim() > 1:
            tensor.copy_(torch.randn(tensor.shape, generator=gen) / math.sqrt(tensor[0].numel()))
        else:
            tensor.copy_(
                torch.randn(tensor.shape, generator=gen) * 0.2 + (1.0 if name.endswith("gamma") else 0)
            )
    return model


@pytest.fixture
def trained_weights(tiny_config, tmp_path):
    model = _randomize(clipctl.create_model(tiny_config)).eval()
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    return model, str(path)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


def test_registered_configs_have_the_seed_text_tower():
    for name in ("unireplknet_l", "unireplknet_l_320", "unireplknet_b", "unireplknet_s", "unireplknet_s_320"):
        cfg = clipctl.get_model_config(name)
        assert cfg["vision_cfg"]["timm_model_name"] == name.removesuffix("_320")
        assert cfg["vision_cfg"]["image_size"] == (320 if name.endswith("_320") else 224)
        assert cfg["vision_cfg"]["timm_proj"] == "linear" and cfg["vision_cfg"]["timm_pool"] == ""
        assert (cfg["text_cfg"]["width"], cfg["text_cfg"]["heads"], cfg["text_cfg"]["layers"]) == (
            1024,
            16,
            24,
        )
        assert cfg["embed_dim"] == 1024


def test_unireplknet_l_clip_sizes_on_meta():
    model = clipctl.create_model("unireplknet_l", device="meta")
    trunk = model.visual.trunk
    assert isinstance(trunk, urlk.UniRepLKNet) and isinstance(trunk.head, nn.Identity)
    assert tuple(model.visual.head.proj.weight.shape) == (1024, 1536) and model.visual.head.proj.bias is None
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(trunk) == 218_539_056  # official train-structure trunk without the 1000-class head
    assert count(model) / 1e6 == pytest.approx(574.1, abs=0.1)


def test_image_feature_is_projection_of_normed_pooled_trunk(tiny_config):
    model = _randomize(clipctl.create_model(tiny_config)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        trunk = model.visual.trunk
        expected = trunk.norm(trunk.forward_features(x).mean((2, 3))) @ model.visual.head.proj.weight.T
        torch.testing.assert_close(model.encode_image(x), expected)


def test_create_model_reparameterize_keeps_outputs(trained_weights, tiny_config):
    reference, path = trained_weights
    model = clipctl.create_model(tiny_config, pretrained=path, reparameterize=True).eval()
    assert model.visual.trunk.deploy
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert _rel(reference.encode_image(x), model.encode_image(x)) < 1e-5


def test_export_cli_writes_a_loadable_reparameterized_folder(trained_weights, tiny_config, tmp_path, capsys):
    reference, path = trained_weights
    out_dir = tmp_path / "exported"
    assert (
        main(
            [
                "export",
                "--model",
                tiny_config,
                "--pretrained",
                path,
                "--reparameterize",
                "--out",
                str(out_dir),
            ]
        )
        == 0
    )
    assert "re-parameterised" in capsys.readouterr().out
    config = json.loads((out_dir / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["timm_model_name"] == "unireplknet_a"
    from clipctl.checkpoint import read_state_dict

    keys = read_state_dict(out_dir / "open_clip_model.safetensors")
    assert not any(".dil_conv_" in k or ".pwconv2.2." in k for k in keys)
    loaded = clipctl.create_model(f"local-dir:{out_dir}").eval()
    assert loaded.visual.trunk.deploy
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel(reference.encode_image(x), loaded.encode_image(x)) < 1e-5


def test_export_cli_to_a_file_and_in_half_precision(trained_weights, tiny_config, tmp_path):
    _, path = trained_weights
    out_file = tmp_path / "deploy.safetensors"
    assert (
        main(
            [
                "export",
                "--model",
                tiny_config,
                "--pretrained",
                path,
                "--reparameterize",
                "--dtype",
                "bf16",
                "--out",
                str(out_file),
            ]
        )
        == 0
    )
    from clipctl.checkpoint import read_state_dict

    state = read_state_dict(out_file)
    assert state["visual.trunk.stages.1.0.dwconv.lk_origin.bias"].dtype == torch.bfloat16


def test_export_refuses_reparameterize_for_models_without_it(tmp_path, capsys):
    from tests.helpers import write_model_config

    config = write_model_config(tmp_path)
    assert main(["export", "--model", str(config), "--reparameterize", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "no re-parameterisable layers" in err and len(err.strip().splitlines()) == 1


def test_trunk_only_checkpoint_is_refused_by_create_model(tiny_config, tmp_path, capsys):
    model = clipctl.create_model(tiny_config)
    path = tmp_path / "trunk_only.pt"
    torch.save(model.visual.trunk.state_dict(), path)
    with pytest.raises(clipctl.ClipctlError, match="only a UniRepLKNet image trunk"):
        clipctl.create_model(tiny_config, pretrained=str(path))
    assert (
        main(["export", "--model", tiny_config, "--pretrained", str(path), "--out", str(tmp_path / "o")]) == 2
    )
    assert "load_trunk_state_dict" in capsys.readouterr().err


@pytest.mark.parametrize("reparameterize, paper_gmacs", [(False, 36.13), (True, 35.88)])
def test_models_show_stats_match_the_paper(reparameterize, paper_gmacs):
    """What `clipctl models show` reports: image GFLOPs = 2 x GMACs of the trunk (paper: 35.88 GMACs deploy,
    36.13 in training form) plus the 1536->1024 projection."""
    from clipctl.models.stats import model_stats

    model = clipctl.create_model("unireplknet_l", device="meta", reparameterize=reparameterize)
    stats = model_stats(model)
    assert stats.image_gflops / 2 == pytest.approx(paper_gmacs, rel=0.005)
    trunk_params = 216_917_616 if reparameterize else 218_539_056
    assert stats.params_visual == trunk_params + 1024 * 1536
