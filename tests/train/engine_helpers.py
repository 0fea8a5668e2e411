"""Tiny models and generated colour-patch shards for the training-engine tests."""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

TINY_TRAIN_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

# a ConvNeXt-tower CLIP: timm's smallest ConvNeXt (4 stages) at 32 px, no stochastic depth
TINY_CONVNEXT_CFG = {
    "embed_dim": 32,
    "vision_cfg": {
        "timm_model_name": "convnext_atto",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "timm_drop": 0.0,
        "timm_drop_path": 0.0,
        "image_size": 32,
    },
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (130, 40, 170),
    "orange": (250, 140, 20),
    "pink": (250, 150, 200),
    "brown": (120, 70, 30),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "cyan": (30, 220, 220),
}


def write_tiny_model(folder: Path, name: str = "tiny-train", cfg: dict | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg or TINY_TRAIN_CFG))
    return str(path)


def colour_image(rgb: tuple[int, int, int], rng: np.random.Generator, size: int = 32) -> bytes:
    noise = rng.normal(0, 12, (size, size, 3))
    pixels = np.clip(np.array(rgb, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def write_colour_shards(
    folder: Path,
    *,
    num_shards: int = 4,
    per_shard: int = 64,
    seed: int = 0,
    sizes: bool = True,
    each_colour_once: bool = False,
) -> str:
    """img2dataset-style shards of noisy colour patches captioned with the colour; returns a brace spec.

    Colours are drawn at random, or with ``each_colour_once`` taken in order (so captions are unique when
    ``per_shard`` is at most the number of colours)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    counts = {}
    for shard in range(num_shards):
        path = folder / f"{shard:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(per_shard):
                colour = names[i % len(names)] if each_colour_once else names[int(rng.integers(len(names)))]
                key = f"{shard:05d}{i:04d}"
                members = {
                    f"{key}.png": colour_image(COLOURS[colour], rng),
                    f"{key}.txt": f"a photo of the colour {colour}".encode(),
                    f"{key}.json": json.dumps({"key": key}).encode(),
                }
                for member, data in members.items():
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        counts[path.name] = per_shard
    if sizes:
        (folder / "sizes.json").write_text(json.dumps(counts))
    return str(folder / f"{{00000..{num_shards - 1:05d}}}.tar")


def heldout_pairs(seed: int = 123) -> tuple[list[bytes], list[str]]:
    rng = np.random.default_rng(seed)
    images = [colour_image(rgb, rng) for rgb in COLOURS.values()]
    return images, [f"a photo of the colour {c}" for c in COLOURS]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


CLIPCTL = [sys.executable, "-m", "clipctl"]
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS", "MASTER_ADDR", "MASTER_PORT")


def launch_env(**extra: str) -> dict[str, str]:
    """:func:`subprocess_env` without the rank variables of a launcher around pytest, plus ``extra``."""
    env = {k: v for k, v in subprocess_env().items() if k not in LAUNCHER_VARIABLES}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*options: str) -> list[str]:
    """``torchrun --nproc_per_node 2`` on 127.0.0.1 and a free port, then ``options``; the script follows."""
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--nproc_per_node", "2", "--master_addr", "127.0.0.1"] + [
        "--master_port",
        str(free_port()),
        *options,
    ]
