"""Generated evaluation data for the eval and CLI tests: ImageFolders, CSVs, shards, CLIP_benchmark folders,
and a tiny random-weight model saved as a config JSON + weights file."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

# Smaller than tests.helpers.TINY_VIT_CFG: the text tower encodes 1000 classes x 7 templates in well under a second.
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def tiny_model_files(folder: Path, seed: int = 0) -> tuple[str, str]:
    """(config JSON path, weights path) of a random-weight tiny CLIP, usable as --model / --pretrained."""
    import torch

    import clipctl

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "tiny-eval.json"
    config.write_text(json.dumps(TINY_CFG))
    torch.manual_seed(seed)
    weights = folder / "tiny-eval.pt"
    torch.save(clipctl.create_model(str(config)).state_dict(), weights)
    return str(config), str(weights)


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (20, 24)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def make_image_folder(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` with ``classes[name]`` random images each."""
    n = seed * 1000
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / name / f"{i}.png").write_bytes(image_bytes(n, size=(16 + i % 5, 20)))
            n += 1
    return root


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_clip_benchmark_classification(
    root: Path, classnames: list[str], per_shard: list[list[int]], templates: list[str] | None = None
) -> Path:
    """CLIP_benchmark's wds layout: ``root/test/{0..n-1}.tar`` (image + .cls), nshards.txt, classnames.txt,
    zeroshot_classification_templates.txt."""
    split = root / "test"
    n = 0
    for shard_id, labels in enumerate(per_shard):
        members = {}
        for label in labels:
            key = f"s{n:05d}"
            members[f"{key}.webp"] = image_bytes(n, "WEBP")
            members[f"{key}.cls"] = str(label).encode()
            n += 1
        write_tar(split / f"{shard_id}.tar", members)
    (split / "nshards.txt").write_text(f"{len(per_shard)}\n")
    (root / "classnames.txt").write_text("".join(f"{c}\n" for c in classnames))
    if templates is not None:
        (root / "zeroshot_classification_templates.txt").write_text("".join(f"{t}\n" for t in templates))
    return root


def make_clip_benchmark_retrieval(root: Path, captions: list[list[str]], per_shard: int = 3) -> Path:
    split = root / "test"
    shards = 0
    for start in range(0, len(captions), per_shard):
        members = {}
        for i in range(start, min(start + per_shard, len(captions))):
            members[f"{i:05d}.jpg"] = image_bytes(i, "JPEG")
            members[f"{i:05d}.txt"] = "\n".join(captions[i]).encode()
        write_tar(split / f"{shards}.tar", members)
        shards += 1
    (split / "nshards.txt").write_text(str(shards))
    (root / "dataset_type.txt").write_text("retrieval\n")
    return root
