import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from clipctl.checkpoint import (
    describe_mismatch,
    load_checkpoint,
    read_state_dict,
    resize_grid_pos_embed,
    save_checkpoint_atomic,
    save_safetensors_atomic,
)
from clipctl.errors import CheckpointError


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))


@pytest.fixture
def state():
    torch.manual_seed(0)
    return Tiny().state_dict()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"epoch": 3, "name": "run", "state_dict": sd, "optimizer": {"state": {}}},
        lambda sd: {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
    ],
    ids=["plain", "training-checkpoint", "ddp-prefix", "torch-compile-prefix"],
)
def test_pickle_layouts_unwrap_to_the_same_state_dict(tmp_path, state, wrap):
    path = tmp_path / "w.pt"
    torch.save(wrap(state), path)
    loaded = read_state_dict(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_safetensors_round_trip_is_atomic_and_exact(tmp_path, state):
    path = save_safetensors_atomic(state, tmp_path / "w.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    assert all(torch.equal(read_state_dict(path)[k], state[k]) for k in state)


class NeedsCode:  # a pickle that can only be loaded by running this module's code
    pass


class RunsCommand:  # unpickling calls os.system: must never happen without --unsafe-load
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class CallsEval:
    def __reduce__(self):
        return eval, ("1 + 1",)


def _payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """name -> (object that needs code, the global the refusal must name)"""
    return {
        "os.system": (RunsCommand(marker), f"{os.system.__module__}.system"),
        "builtins.eval": (CallsEval(), "builtins.eval"),
        "custom class": (NeedsCode(), f"{__name__}.NeedsCode"),
    }


def _write(obj: object, path: Path, fmt: str) -> None:
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)


@pytest.mark.parametrize("fmt", ["zip", "legacy", "plain-pickle"])
@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "custom class"])
def test_pickles_that_need_code_are_refused_naming_the_code(tmp_path, state, fmt, payload):
    marker = tmp_path / "ran"
    obj, needed = _payloads(marker)[payload]
    path = tmp_path / "w.pt"
    _write({"state_dict": state, "extra": obj}, path, fmt)
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert f"needs code to load ({needed})" in message and "--unsafe-load" in message and "\n" not in message
    assert not marker.exists(), "the payload ran"


def test_the_refusal_does_not_depend_on_torchs_wording(tmp_path, state, monkeypatch):
    """torch 2.4 and 2.14 word the refusal differently; a future torch may again. The file decides."""
    path = tmp_path / "w.pt"
    torch.save({"state_dict": state, "extra": CallsEval()}, path)
    real_load = torch.load

    def reworded(*args, **kwargs):
        try:
            return real_load(*args, **kwargs)
        except Exception as err:
            raise pickle.UnpicklingError("load refused for reasons of its own") from err

    monkeypatch.setattr(torch, "load", reworded)
    with pytest.raises(CheckpointError, match=r"needs code to load \(builtins\.eval\)"):
        read_state_dict(path)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    assert read_state_dict(plain).keys() == state.keys()


def test_a_trusted_pickle_loads_with_unsafe_load(tmp_path, state):
    path = tmp_path / "trusted.pt"
    torch.save({"state_dict": state, "extra": NeedsCode()}, path)
    assert read_state_dict(path, weights_only=False).keys() == state.keys()


def test_corrupt_and_non_state_dict_files_are_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(corrupt)
    torch.save({"epoch": 1}, tmp_path / "nostate.pt")
    with pytest.raises(CheckpointError, match="state dict"):
        read_state_dict(tmp_path / "nostate.pt")
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="safetensors"):
        read_state_dict(bad_st)


def test_torchscript_archives_load_without_their_attributes(tmp_path):
    class Scripted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.register_buffer("input_resolution", torch.tensor(224))

        def forward(self, x):
            return self.fc(x)

    module = Scripted()
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    loaded = read_state_dict(path)
    assert set(loaded) == {"fc.weight", "fc.bias"}
    assert torch.equal(loaded["fc.weight"], module.fc.weight)


def test_mismatch_names_missing_unexpected_and_shape_keys(tmp_path, state):
    bad = dict(state)
    bad["fc.weight"] = torch.zeros(5, 3)
    bad["vision_model.embeddings.patch_embedding.weight"] = torch.zeros(1)
    del bad["fc.bias"]
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(Tiny(), tmp_path / "bad.pt")
    message = str(info.value)
    assert "1 missing (fc.bias)" in message
    assert "vision_model.embeddings.patch_embedding.weight" in message
    assert "fc.weight: checkpoint [5, 3] vs model [2, 3]" in message
    assert "Hugging Face transformers" in message
    assert describe_mismatch(state, Tiny()) is None


def test_logit_scale_shapes_are_reconciled(tmp_path, state):
    state = dict(state)
    state["logit_scale"] = state["logit_scale"].reshape(1)
    torch.save(state, tmp_path / "w.pt")
    model = Tiny()
    load_checkpoint(model, tmp_path / "w.pt")
    assert model.logit_scale.shape == torch.Size([])


def test_grid_resize_keeps_the_class_token_and_is_identity_at_same_size():
    pos = torch.randn(50, 8)
    assert torch.allclose(resize_grid_pos_embed(pos, 50), pos, atol=1e-5)
    resized = resize_grid_pos_embed(pos, 65)
    assert resized.shape == (65, 8) and torch.equal(resized[0], pos[0])


def test_save_checkpoint_atomic_leaves_no_temp_file(tmp_path):
    save_checkpoint_atomic({"epoch": 1}, tmp_path / "ckpt" / "epoch_1.pt")
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch_1.pt"]
    assert torch.load(tmp_path / "ckpt" / "epoch_1.pt")["epoch"] == 1
