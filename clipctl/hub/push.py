"""Upload a model to the Hugging Face Hub with ``huggingface_hub.HfApi`` (``create_repo`` + ``upload_folder``).

The token comes only from huggingface_hub's usual sources (``HF_TOKEN``, the token file written by
``hf auth login``); it is never printed, and any error text that would contain it is scrubbed. The ``api``
argument takes any object with HfApi's methods, so tests run against a fake without a network.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipctl.errors import ClipctlError, RunFailure
from clipctl.hub.export import (
    DEFAULT_LICENSE,
    README_NAME,
    load_planned,
    plan_model,
    write_layout,
)

DEFAULT_COMMIT_MESSAGE = "Add model"
# The Hub's rule: 'name' or 'namespace/name'; letters, digits, '-', '_', '.'; no leading/trailing '-' or '.',
# no '--' or '..'; at most 96 characters per part.
_REPO_PART = re.compile(r"^(?![-.])[A-Za-z0-9_.-]{1,96}(?<![-.])$")


@dataclass
class PushResult:
    repo_id: str
    revision: str | None
    files: list[str]
    url: str
    private: bool
    kept_readme: bool = False


def validate_repo_id(repo_id: str | None) -> str:
    """``repo_id`` if it is a valid Hub model id, else a one-line ClipctlError saying what is wrong."""
    if not repo_id or not repo_id.strip():
        raise ClipctlError("--repo-id is required (ORG/NAME or NAME), unless --local-dir is given")
    parts = repo_id.split("/")
    if len(parts) > 2:
        raise ClipctlError(f"bad --repo-id {repo_id!r}: use NAME or NAMESPACE/NAME (one '/' at most)")
    bad = sorted({c for c in repo_id if not (c.isascii() and (c.isalnum() or c in "-_./"))})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ClipctlError(
            f"bad --repo-id {repo_id!r}: character(s) {shown} not allowed (letters, digits, '-', '_', '.')"
        )
    for part in parts:
        if not _REPO_PART.match(part) or "--" in part or ".." in part:
            raise ClipctlError(
                f"bad --repo-id {repo_id!r}: each part must be 1-96 characters, must not start or end with "
                "'-' or '.', and must not contain '--' or '..'"
            )
    return repo_id


def _token_values() -> list[str]:
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:  # noqa: BLE001 - no token source is not an error here
        token = None
    return [token] if token else []


def _scrub(text: str) -> str:
    for token in _token_values():
        text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return _scrub(line)


def _default_api() -> Any:
    try:
        from huggingface_hub import HfApi
    except ImportError as err:
        raise ClipctlError("push-to-hub needs huggingface_hub: pip install huggingface_hub") from err
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ClipctlError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it, or write the folder with --local-dir"
        )
    if not _token_values():
        raise ClipctlError(
            "no Hugging Face token found: run `hf auth login` or set HF_TOKEN (or write the folder with --local-dir)"
        )
    return HfApi()


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ClipctlError:
        raise
    except Exception as err:  # noqa: BLE001 - the Hub client raises many types; each becomes one line
        raise RunFailure(f"{what} failed: {type(err).__name__}: {_one_line(err)}") from None


def push_to_hub(
    model_name: str | None,
    pretrained: str | None,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    write_bin: bool = False,
    overwrite: bool = False,
    license: str = DEFAULT_LICENSE,
    weights_only: bool = True,
    api: Any = None,
) -> PushResult:
    """Load a model and upload it in the Hub layout to ``repo_id``.

    The repo is created if needed (``private`` applies to a new repo), and the ``revision`` branch too. A
    ``README.md`` already in the repo is kept unless ``overwrite``. Everything is validated (repo id, token,
    model, weights) before anything is uploaded.
    """
    validate_repo_id(repo_id)
    if revision is not None and not revision.strip():
        raise ClipctlError("--revision must not be empty")
    api = api if api is not None else _default_api()
    plan = plan_model(model_name, pretrained)
    prepared = load_planned(plan, weights_only=weights_only)

    repo_url = _call(
        "creating the Hub repo", api.create_repo, repo_id, private=private, exist_ok=True, repo_type="model"
    )
    full_id = getattr(repo_url, "repo_id", None) or repo_id
    if revision and revision != "main":
        _call(
            f"creating branch {revision!r}",
            api.create_branch,
            full_id,
            branch=revision,
            exist_ok=True,
            repo_type="model",
        )
    keep_readme = False
    if not overwrite and hasattr(api, "file_exists"):
        keep_readme = bool(
            _call(
                "checking the repo's README.md",
                api.file_exists,
                full_id,
                README_NAME,
                repo_type="model",
                revision=revision,
            )
        )
    with tempfile.TemporaryDirectory(prefix="clipctl-push-") as tmp:
        folder = Path(tmp)
        files = write_layout(
            prepared,
            folder,
            reference=f"hf-hub:{full_id}",
            write_bin=write_bin,
            license=license,
            write_readme=not keep_readme,
        )
        commit = _call(
            "uploading to the Hub",
            api.upload_folder,
            repo_id=full_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
        )
    url = str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{full_id}")
    return PushResult(
        repo_id=full_id,
        revision=revision,
        files=sorted(files),
        url=url,
        private=private,
        kept_readme=keep_readme,
    )
