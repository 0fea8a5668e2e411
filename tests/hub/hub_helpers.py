"""Shared by the hub and push-to-hub CLI tests: tiny models with checkpoints, and a fake ``HfApi``."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from tests.helpers import TINY_VIT_CFG, write_model_config


def tiny_model_with_weights(folder: Path, name: str = "tiny-hub", cfg: dict | None = None, seed: int = 0):
    """A tiny architecture JSON and a random checkpoint for it (OpenCLIP's training-checkpoint shape)."""
    import clipctl

    config = write_model_config(folder, name, cfg or TINY_VIT_CFG)
    torch.manual_seed(seed)
    model = clipctl.create_model(str(config), pretrained_text=False)
    weights = folder / f"{name}-{seed}.pt"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, weights)
    return str(config), weights, model.state_dict()


def other_cfg() -> dict:
    cfg = copy.deepcopy(TINY_VIT_CFG)
    cfg["embed_dim"] = 16
    return cfg


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


class FakeHfApi:
    """Records what would be sent to the Hub; ``upload_folder`` keeps a copy of each uploaded file's bytes."""

    def __init__(
        self, readme_exists: bool = False, fail_upload: Exception | None = None, namespace: str = "me"
    ):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        self.readme_exists = readme_exists
        self.fail_upload = fail_upload
        self.namespace = namespace

    def create_repo(self, repo_id: str, **kwargs: Any):
        self.calls.append(("create_repo", (repo_id,), kwargs))
        full = repo_id if "/" in repo_id else f"{self.namespace}/{repo_id}"
        return SimpleNamespace(repo_id=full, url=f"https://huggingface.co/{full}")

    def create_branch(self, repo_id: str, **kwargs: Any) -> None:
        self.calls.append(("create_branch", (repo_id,), kwargs))

    def file_exists(self, repo_id: str, filename: str, **kwargs: Any) -> bool:
        self.calls.append(("file_exists", (repo_id, filename), kwargs))
        return self.readme_exists and filename == "README.md"

    def upload_folder(self, **kwargs: Any):
        self.calls.append(("upload_folder", (), kwargs))
        if self.fail_upload is not None:
            raise self.fail_upload
        folder = Path(kwargs["folder_path"])
        self.uploaded = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123")

    def call(self, name: str) -> tuple[tuple, dict]:
        found = [(args, kwargs) for n, args, kwargs in self.calls if n == name]
        assert len(found) == 1, f"{name} called {len(found)} times: {self.calls}"
        return found[0]

    def uploaded_config(self) -> dict:
        return json.loads(self.uploaded["open_clip_config.json"])
