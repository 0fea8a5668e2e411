"""Fetching files from the Hugging Face Hub through huggingface_hub's own cache.

Downloads honour ``HF_HUB_OFFLINE=1`` and the usual cache variables (``HF_HOME``, ``HF_HUB_CACHE``); a file
that is not there while offline is reported with the repo, the file and how to pass a local copy instead.
"""

from __future__ import annotations

from pathlib import Path

from clipctl.errors import ClipctlError


def fetch_hub_file(
    repo_id: str,
    filenames: str | tuple[str, ...],
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> Path:
    """The first of ``filenames`` the repo has (the Hub layout tries safetensors, then the pickle)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    filenames = (filenames,) if isinstance(filenames, str) else tuple(filenames)
    wanted = " or ".join(filenames)
    not_cached = False
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir))
        except LocalEntryNotFoundError:
            not_cached = True
        except EntryNotFoundError:
            continue
        except RepositoryNotFoundError as err:
            raise ClipctlError(
                f"hf-hub:{repo_id} does not exist or is private (check the name and your token)"
            ) from err
        except HfHubHTTPError as err:
            raise ClipctlError(f"downloading {filename} from hf-hub:{repo_id} failed: {err}") from err
        except ValueError as err:  # malformed repo ids
            raise ClipctlError(f"bad Hub repo id {repo_id!r}: {err}") from err
    if not_cached:
        raise ClipctlError(
            f"{wanted} of hf-hub:{repo_id} is not in the local Hugging Face cache and cannot be downloaded "
            f"(HF_HUB_OFFLINE=1 or no network); run `hf download {repo_id} {filenames[0]}` where there is a network "
            "and copy the cache, or pass the file's path as pretrained"
        )
    raise ClipctlError(f"hf-hub:{repo_id} has no file {wanted}")
