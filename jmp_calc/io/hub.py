"""Fetching registry models from the Hugging Face Hub: pinned revision, local cache, sha256 check, clear errors.

huggingface_hub writes downloads to a temporary ``.incomplete`` file and renames it when complete, so an
interrupted download never leaves a file that looks finished; we additionally verify the sha256 of every file
before it is loaded, and refuse a mismatch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import CheckpointError, ModelNotAvailableError
from .registry import ModelEntry

__all__ = ["ModelNotAvailableError", "fetch", "sha256sum"]


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fetch(entry: ModelEntry, *, cache_dir: str | Path | None = None, local_files_only: bool | None = None) -> Path:
    """Download (or find in the cache) every file of ``entry``; returns the local path of its main file."""
    if not entry.published:
        raise ModelNotAvailableError(f"model {entry.name!r} is not published on the Hub yet. {entry.where}")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover
        raise ModelNotAvailableError("downloading models needs huggingface_hub: pip install huggingface_hub") from None
    # read the environment now (huggingface_hub reads it once, at import)
    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    paths = []
    for filename, sha in entry.files:
        try:
            path = hf_hub_download(entry.repo_id, filename, revision=entry.revision, cache_dir=cache_dir,
                                   local_files_only=bool(local_files_only))
        except LocalEntryNotFoundError:
            raise ModelNotAvailableError(
                f"model {entry.name!r} ({entry.repo_id}/{filename} @ {entry.revision}) is not in the local Hugging "
                "Face cache and the Hub cannot be reached (offline, HF_HUB_OFFLINE=1, or no network). On a machine "
                f"with internet run `python -m jmp_calc.download {entry.name}` and copy the cache (HF_HOME), or "
                "pass a local path to JMPCalculator.") from None
        except GatedRepoError:
            raise ModelNotAvailableError(
                f"{entry.repo_id} is gated: accept its terms on the Hub and log in (`huggingface-cli login` or "
                "HF_TOKEN) before downloading.") from None
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
            raise ModelNotAvailableError(f"{entry.repo_id}/{filename} @ {entry.revision} was not found on the Hub "
                                         f"({type(exc).__name__}); is jmp_calc up to date?") from None
        except OSError as exc:  # connection dropped, disk full, ...
            raise ModelNotAvailableError(f"downloading {entry.repo_id}/{filename} failed: {exc}. Nothing was "
                                         "loaded; run the command again to resume.") from None
        if sha:
            got = sha256sum(path)
            if got != sha:
                raise CheckpointError(f"sha256 mismatch for {entry.name} ({path}): expected {sha}, got {got}. "
                                      "The file is corrupt or was changed; delete it from the cache and download "
                                      "again.")
        paths.append(Path(path))
    return paths[0]
