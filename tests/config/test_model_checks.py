"""Architecture configs with sizes no model can have are refused with one line naming the key, before any
module is built (torch would fail deep inside with "negative dimension" or "divisible by num_heads")."""

from __future__ import annotations

import copy
import json

import pytest

from clipctl.cli.main import main
from clipctl.config.model_checks import check_model_cfg
from clipctl.config.registry import get_model_config, list_models
from clipctl.config.resolver import resolve_model
from clipctl.errors import ClipctlError
from tests.helpers import TINY_VIT_CFG, assert_user_error

BAD = [
    ("embed_dim", 0, "embed_dim must be a positive integer"),
    ("embed_dim", -32, "embed_dim must be a positive integer"),
    ("vision_cfg.width", -64, "vision_cfg.width must be a positive integer"),
    ("vision_cfg.width", 64.5, "vision_cfg.width must be a positive integer"),
    ("vision_cfg.width", 100, "vision_cfg.width must be a multiple of its heads"),
    ("vision_cfg.layers", -1, "vision_cfg.layers must be a non-negative integer"),
    ("vision_cfg.patch_size", 0, "vision_cfg.patch_size must be a positive integer"),
    ("vision_cfg.patch_size", 64, "vision_cfg.patch_size must be at most the image size 32"),
    ("vision_cfg.image_size", 0, "vision_cfg.image_size must be a positive integer"),
    ("vision_cfg.image_size", [32, -1], "vision_cfg.image_size must be a positive integer"),
    ("vision_cfg.mlp_ratio", 0, "vision_cfg.mlp_ratio must be a positive number"),
    ("text_cfg.context_length", 0, "text_cfg.context_length must be a positive integer"),
    ("text_cfg.vocab_size", -5, "text_cfg.vocab_size must be a positive integer"),
    ("text_cfg.width", 0, "text_cfg.width must be a positive integer"),
    ("text_cfg.heads", 3, "text_cfg.width must be divisible by text_cfg.heads = 3"),
    ("text_cfg.heads", True, "text_cfg.heads must be a positive integer"),
    ("text_cfg.layers", "two", "text_cfg.layers must be a non-negative integer"),
]


def bad_config(key: str, value) -> dict:
    cfg = copy.deepcopy(TINY_VIT_CFG)
    node = cfg
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    node[last] = value
    return cfg


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_impossible_sizes_are_named(key, value, message):
    with pytest.raises(
        ClipctlError, match="^model config bad: " + message.replace(".", r"\.").replace("(", r"\(")
    ):
        check_model_cfg(bad_config(key, value), "bad")


def test_every_builtin_architecture_passes():
    for name in list_models():
        check_model_cfg(get_model_config(name), name)
    check_model_cfg(TINY_VIT_CFG, "tiny")


def test_forced_overrides_are_checked_too():
    with pytest.raises(ClipctlError, match="image_size"):
        resolve_model("tiny-ViT-8-64", force_image_size=0)
    with pytest.raises(ClipctlError, match="context_length"):
        resolve_model("tiny-ViT-8-64", force_context_length=-1)


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "show", "{cfg}"],
        ["embed", "{cfg}", "--out", "{dir}/e.parquet", "--model", "{cfg}", "--pretrained", "none", "-q"],
        [
            "train",
            "--model",
            "{cfg}",
            "--dataset-type",
            "synthetic",
            "--train-num-samples",
            "64",
            "--dry-run",
        ],
        ["export", "--model", "{cfg}", "--pretrained", "none", "--out", "{dir}/w.safetensors"],
    ],
    ids=["models-show", "embed", "train", "export"],
)
def test_commands_refuse_a_bad_config_with_one_line(argv, tmp_path, capsys):
    cfg = tmp_path / "neg.json"
    cfg.write_text(json.dumps(bad_config("vision_cfg.width", -64)))
    assert main([a.format(cfg=cfg, dir=tmp_path) for a in argv]) == 2
    assert_user_error(capsys.readouterr().err, "vision_cfg.width must be a positive integer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neg.json"]
