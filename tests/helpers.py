"""Small builders shared by tests: tiny model configs and a Hugging Face cache laid out as huggingface_hub does."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

TINY_VIT_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def assert_user_error(stderr: str, message: str = "") -> str:
    """A refusal as DESIGN.md's bad-input rule wants it: one ``clipctl: error:`` line naming the problem, never
    an internal error or a traceback (``note:`` lines printed before the work started may precede it).
    Returns the line."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("note: ")]
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("clipctl: error: "), stderr
    assert message in lines[0], f"{message!r} not in {lines[0]!r}"
    return lines[0]


def write_model_config(folder: Path, name: str = "tiny-test", cfg: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg or TINY_VIT_CFG))
    return path


def add_to_hf_cache(repo_id: str, files: dict[str, Path | bytes | str], cache_dir: str | None = None) -> Path:
    """Put files into the cache as `hf download` would leave them (blobs, a snapshot, refs/main)."""
    cache = Path(cache_dir or os.environ["HF_HUB_CACHE"])
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, content in files.items():
        data = (
            Path(content).read_bytes()
            if isinstance(content, Path)
            else content.encode()
            if isinstance(content, str)
            else content
        )
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(os.path.relpath(blob, target.parent))
    return snapshot


def remove_from_hf_cache(repo_id: str, cache_dir: str | None = None) -> None:
    cache = Path(cache_dir or os.environ["HF_HUB_CACHE"])
    shutil.rmtree(cache / f"models--{repo_id.replace('/', '--')}", ignore_errors=True)
