"""Reading soup ingredients in every form clipctl loads, and naming the first key two architectures differ in."""

import pytest
import torch

from clipctl.errors import CheckpointError, ClipctlError
from clipctl.soup.ingredients import check_same_architecture, first_difference, read_ingredient
from tests.soup.soup_data import random_checkpoint, tiny_config


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ingredients")
    config = tiny_config(folder)
    return folder, config, random_checkpoint(config, folder / "a.pt", seed=0)


def _equal(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_plain_safetensors_and_training_checkpoints_read_the_same(model, tmp_path):
    folder, config, state_dict = model
    random_checkpoint(config, tmp_path / "a.safetensors", seed=0)
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, tmp_path / "t.pt"
    )
    for path in (folder / "a.pt", tmp_path / "a.safetensors", tmp_path / "t.pt"):
        assert _equal(read_ingredient(path).state_dict, state_dict), path


def test_hub_layout_folders_read_with_or_without_local_dir(model, tmp_path):
    from clipctl.hub.deploy import export_model

    folder, config, state_dict = model
    export_model(config, tmp_path / "hub", pretrained=str(folder / "a.pt"))
    for spec in (f"local-dir:{tmp_path / 'hub'}", str(tmp_path / "hub")):
        ingredient = read_ingredient(spec)
        assert ingredient.hub_name == f"local-dir:{tmp_path / 'hub'}"
        assert _equal(ingredient.state_dict, state_dict)


def test_missing_and_unusable_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ClipctlError, match="does not exist"):
        read_ingredient(tmp_path / "nope.pt")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ClipctlError, match="without open_clip_config.json"):
        read_ingredient(tmp_path / "plain")
    (tmp_path / "dcp").mkdir()
    (tmp_path / "dcp" / ".metadata").write_bytes(b"")
    with pytest.raises(ClipctlError, match="sharded"):
        read_ingredient(tmp_path / "dcp")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_ingredient(tmp_path / "junk.pt")


def test_first_difference_names_the_first_key_in_order():
    a = {"x": torch.zeros(2), "y": torch.zeros(3), "z": torch.zeros(1)}
    assert first_difference(a, dict(a)) is None
    assert first_difference(a, {"x": torch.zeros(2), "z": torch.zeros(1)}) == "'y' is missing"
    assert (
        first_difference(a, {**a, "y": torch.zeros(4), "z": torch.zeros(5)})
        == "'y' is [4] float32, not [3] float32"
    )
    assert first_difference(a, {**a, "extra": torch.zeros(1)}) == "'extra' is not in the first checkpoint"
    assert "int64" in first_difference(a, {**a, "x": torch.zeros(2, dtype=torch.long)})


def test_another_architecture_is_refused_naming_the_key(model, tmp_path):
    from clipctl.soup.ingredients import Ingredient

    folder, config, state_dict = model
    wider = random_checkpoint(tiny_config(tmp_path, width=48), tmp_path / "wide.pt", seed=0)
    first_differing = next(k for k in state_dict if state_dict[k].shape != wider[k].shape)
    with pytest.raises(CheckpointError, match=f"first differing key '{first_differing}'"):
        check_same_architecture(Ingredient("a.pt", state_dict), Ingredient("wide.pt", wider))
