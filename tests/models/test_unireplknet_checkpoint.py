"""Loading UniRepLKNet weights in every layout: CLIP (visual.trunk.*), bare trunk, training or deploy form, the
projection as the trunk's head or as visual.head.proj, and refusals that name the keys when only part fits."""

from __future__ import annotations

import copy
import logging
import math
from collections import OrderedDict

import pytest
import timm
import torch
from torch import nn

from clipctl.checkpoint import load_checkpoint
from clipctl.errors import CheckpointError
from clipctl.models import unireplknet as urlk

LAYOUT = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (13,), (13, 3), (13,)))
EMBED = 24


class TowerLikeTimmModel(nn.Module):
    """The image tower's layout (trunk + head.proj), as the CLIP timm tower builds it."""

    def __init__(self, proj: str = "linear", proj_bias: bool = False, deploy: bool = False):
        super().__init__()
        num_classes = 0 if proj == "linear" else EMBED
        self.trunk = timm.create_model("unireplknet_a", num_classes=num_classes, deploy=deploy, **LAYOUT)
        layers = OrderedDict()
        if proj == "linear":
            layers["drop"] = nn.Dropout(0.0)
            layers["proj"] = nn.Linear(self.trunk.num_features, EMBED, bias=proj_bias)
        self.head = nn.Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class ClipLike(nn.Module):
    def __init__(self, **tower_kwargs):
        super().__init__()
        self.visual = TowerLikeTimmModel(**tower_kwargs)
        self.token_embedding = nn.Embedding(10, EMBED)
        self.text_projection = nn.Parameter(torch.randn(EMBED, EMBED))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


@torch.no_grad()
def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return model


def _image_features(model: ClipLike, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().visual(x)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.fixture
def image():
    return torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(5))


def test_clip_checkpoint_round_trips_strictly(tmp_path, image):
    source = _randomize(ClipLike())
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = ClipLike()
    load_checkpoint(target, path)
    torch.testing.assert_close(_image_features(target, image), _image_features(source, image))


def test_trunk_head_as_projection_maps_to_visual_head_proj(tmp_path, image):
    source = _randomize(ClipLike(proj=""))
    with torch.no_grad():
        source.visual.trunk.head.bias.zero_()
    path = tmp_path / "head_proj.pt"
    torch.save(source.state_dict(), path)
    target = ClipLike(proj="linear")
    load_checkpoint(target, path)
    torch.testing.assert_close(target.visual.head.proj.weight, source.visual.trunk.head.weight)
    torch.testing.assert_close(_image_features(target, image), _image_features(source, image))


def test_trunk_head_projection_bias_needs_a_biased_projection(tmp_path, image):
    source = _randomize(ClipLike(proj=""))
    path = tmp_path / "head_proj_bias.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(CheckpointError, match="timm_proj_bias"):
        load_checkpoint(ClipLike(proj="linear"), path)
    target = ClipLike(proj="linear", proj_bias=True)
    load_checkpoint(target, path)
    torch.testing.assert_close(_image_features(target, image), _image_features(source, image))


def test_linear_projection_checkpoint_loads_into_trunk_head_model(tmp_path, image):
    source = _randomize(ClipLike(proj="linear"))
    path = tmp_path / "linear.pt"
    torch.save(source.state_dict(), path)
    target = ClipLike(proj="")
    load_checkpoint(target, path)
    torch.testing.assert_close(_image_features(target, image), _image_features(source, image))


def test_deploy_checkpoint_switches_a_training_form_model(tmp_path, image, caplog):
    source = urlk.reparameterize_model(_randomize(ClipLike()).eval())
    path = tmp_path / "deploy.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = ClipLike()
    assert not target.visual.trunk.deploy
    # other tests in the same worker may have changed logging levels (img2dataset, training runs)
    with caplog.at_level(logging.WARNING, logger="clipctl"):
        load_checkpoint(target, path)
    assert target.visual.trunk.deploy
    assert "deploy" in caplog.text
    torch.testing.assert_close(_image_features(target, image), _image_features(source, image))


def test_training_checkpoint_is_reparameterized_for_a_deploy_model(tmp_path, image):
    source = _randomize(ClipLike()).eval()
    path = tmp_path / "train.pt"
    torch.save(source.state_dict(), path)
    target = ClipLike(deploy=True)
    load_checkpoint(target, path)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in target.modules())
    assert _rel(_image_features(source, image), _image_features(target, image)) < 1e-5


def test_bare_trunk_checkpoint_is_refused_for_a_whole_clip_model(tmp_path, image):
    imagenet = _randomize(timm.create_model("unireplknet_a", num_classes=1000, **LAYOUT))
    path = tmp_path / "imagenet.pth"
    torch.save({"model": imagenet.state_dict()}, path)
    target = ClipLike()
    with pytest.raises(CheckpointError, match="only a UniRepLKNet image trunk.*token_embedding"):
        load_checkpoint(target, path)
    # ... but initialises the image trunk, dropping the 1000-class head.
    from clipctl.checkpoint import read_state_dict

    urlk.load_trunk_state_dict(target.visual.trunk, read_state_dict(path))
    with torch.no_grad():
        expected = imagenet.eval().forward_head(imagenet.forward_features(image), pre_logits=True)
        torch.testing.assert_close(target.visual.trunk.eval()(image), expected)


def test_partial_trunk_checkpoint_is_refused_naming_keys(tmp_path):
    source = ClipLike()
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("visual.trunk.stages.3.")}
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"image-trunk keys missing \(visual\.trunk\.stages\.3\.0\."):
        load_checkpoint(ClipLike(), path)


def test_other_variant_is_refused_naming_mis_shaped_keys(tmp_path):
    other = timm.create_model(
        "unireplknet_a",
        num_classes=0,
        depths=LAYOUT["depths"],
        dims=(8, 16, 32, 64),
        kernel_sizes=LAYOUT["kernel_sizes"],
    )
    path = tmp_path / "other.pt"
    torch.save({f"visual.trunk.{k}": v for k, v in other.state_dict().items()}, path)
    with pytest.raises(CheckpointError, match="mis-shaped .*downsample_layers"):
        load_checkpoint(ClipLike(), path)


def test_state_dicts_of_other_models_pass_through_unchanged():
    state = {"visual.conv1.weight": torch.zeros(1), "token_embedding.weight": torch.zeros(1)}
    assert urlk.adapt_state_dict(state, ClipLike()) == state
    assert urlk.adapt_state_dict(state, nn.Linear(1, 1)) == state


def test_bare_trunk_checkpoint_loads_into_a_bare_trunk_in_either_form():
    train = _randomize(timm.create_model("unireplknet_a", num_classes=7, **LAYOUT)).eval()
    deploy = timm.create_model("unireplknet_a", num_classes=7, deploy=True, **LAYOUT).eval()
    urlk.load_trunk_state_dict(deploy, {f"module.{k}": v for k, v in train.state_dict().items()})
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert _rel(train(x), deploy(x)) < 1e-5
    no_head = {k: v for k, v in train.state_dict().items() if not k.startswith("head.")}
    with pytest.raises(CheckpointError, match="missing .*head.weight"):
        urlk.load_trunk_state_dict(copy.deepcopy(train), no_head)


def test_timm_pretrained_file_uses_the_filter(tmp_path):
    source = _randomize(ClipLike())
    path = tmp_path / "clip_for_timm.pth"
    torch.save(source.state_dict(), path)
    trunk = timm.create_model(
        "unireplknet_a", pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(path)), **LAYOUT
    )
    torch.testing.assert_close(trunk.state_dict(), source.visual.trunk.state_dict())


def test_image_tower_saved_alone_loads_under_visual(image):
    source = _randomize(ClipLike())
    tower_only = source.visual.state_dict()  # trunk.* and head.proj.*
    target = ClipLike()
    converted = urlk.convert_unireplknet_clip_state_dict(tower_only, target)
    assert "visual.head.proj.weight" in converted and "visual.trunk.norm.weight" in converted
    target.load_state_dict({**target.state_dict(), **converted}, strict=True)
    torch.testing.assert_close(_image_features(target, image), _image_features(source, image))
