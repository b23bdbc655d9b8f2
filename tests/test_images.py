"""Real `uv` builds, offline: the wheels are made here, so no index is ever contacted."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from shipyard.exceptions import ImageBuildError
from shipyard.server._images import BuiltImage, ImageBuilder
from shipyard.spec import ImageSpec, ImageStep


def _write_wheel(directory: Path, name: str, version: str, files: dict[str, str],
                 entry_points: str = "") -> None:
    dist_info = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": ("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                               "Tag: py3-none-any\n"),
    }
    if entry_points:
        files[f"{dist_info}/entry_points.txt"] = entry_points
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wheelhouse")
    _write_wheel(directory, "tinyhello", "1.0",
                 {"tinyhello/__init__.py": "def main() -> None:\n    print('hello from tinyhello')\n"},
                 entry_points="[console_scripts]\ntinyhello = tinyhello:main\n")
    # Shadows the server's own idna: proves packages installed into the image take precedence.
    _write_wheel(directory, "idna", "99.0", {"idna/__init__.py": "__version__ = '99.0'\n"})
    return directory


@pytest.fixture
def offline(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory,
            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(wheelhouse))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "uv-cache"))


def _run_in(image: BuiltImage, code: str) -> str:
    env = {**image.env, "PYTHONPATH": ":".join(image.python_path)}
    result = subprocess.run([image.python, "-c", code], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def _run_script(image: BuiltImage, name: str) -> str:
    script = Path(image.python).parent / name
    result = subprocess.run([script], env=image.env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


async def test_venv_image_installs_offline_and_is_cached(offline: None, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    out = tmp_path / "out.txt"
    image = ImageSpec(steps=[
        ImageStep(op="env", env={"GREETING": "hi", "OUT": str(out)}),
        ImageStep(op="uv_pip_install", packages=["tinyhello", "idna==99.0"]),
        ImageStep(op="run_commands", commands=['echo "step sees $GREETING"', 'tinyhello > "$OUT"']),
    ])
    builder = ImageBuilder(tmp_path / "images")
    messages: list[str] = []
    # Two deploys at once build the image once.
    first, second = await asyncio.gather(builder.ensure(image, bundle, messages.append),
                                         builder.ensure(image, bundle, messages.append))
    assert first == second
    assert first.python != sys.executable and first.python.startswith(str(tmp_path / "images"))
    assert sum(m.startswith("Building image") and m.endswith("…") for m in messages) == 1
    assert any("uv pip install tinyhello" in m for m in messages)
    assert "step sees hi" in messages
    assert out.read_text().strip() == "hello from tinyhello"
    assert first.env["GREETING"] == "hi" and first.env["PATH"].startswith(str(Path(first.python).parent))

    imports = "import idna, tinyhello, shipyard.spec, fastapi, uvicorn"
    printed = _run_in(first, f"{imports}; print(idna.__version__)")
    assert printed == "99.0"
    # The venv was renamed into place after the build: its console scripts must still work.
    assert _run_script(first, "tinyhello") == "hello from tinyhello"
    assert not list((tmp_path / "images").glob(".tmp-*"))

    # A restarted server reuses the image without rebuilding.
    messages.clear()
    started = time.monotonic()
    again = await ImageBuilder(tmp_path / "images").ensure(image, bundle, messages.append)
    assert again == first and messages == []
    assert time.monotonic() - started < 1.0


async def test_local_only_image_needs_no_venv(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "src" / "helpers").mkdir(parents=True)
    (bundle / "src" / "helpers" / "__init__.py").write_text("VALUE = 1\n")
    (bundle / "assets").mkdir()
    (bundle / "assets" / "a.txt").write_text("asset")
    (bundle / "config.toml").write_text("x = 1")
    image = ImageSpec(python_version="{}.{}".format(*sys.version_info[:2]), steps=[
        ImageStep(op="env", env={"A": "1"}),
        ImageStep(op="add_local_python_source", modules=["helpers"], bundle_path="src"),
        ImageStep(op="add_local_dir", bundle_path="assets", remote_path="/data/assets"),
        ImageStep(op="add_local_file", bundle_path="config.toml", remote_path="/etc/app/"),
        ImageStep(op="env", env={"A": "2", "B": "3"}),
    ])
    builder = ImageBuilder(tmp_path / "images")
    built = await builder.ensure(image, bundle, lambda _: None)
    assert built.python == sys.executable
    assert built.env == {"A": "2", "B": "3"}
    assert _run_in(built, "import helpers; print(helpers.VALUE)") == "1"
    mounts = {m.target: Path(m.source) for m in built.mounts}
    assert set(mounts) == {"/data/assets", "/etc/app/config.toml"}
    assert (mounts["/data/assets"] / "a.txt").read_text() == "asset"
    assert mounts["/etc/app/config.toml"].read_text() == "x = 1"
    assert bundle not in mounts["/data/assets"].parents

    # The copies do not depend on the bundle, and editing a local file gives a new copy.
    (bundle / "src" / "helpers" / "__init__.py").write_text("VALUE = 2\n")
    rebuilt = await builder.ensure(image, bundle, lambda _: None)
    assert rebuilt.python_path != built.python_path
    assert _run_in(built, "import helpers; print(helpers.VALUE)") == "1"
    assert _run_in(rebuilt, "import helpers; print(helpers.VALUE)") == "2"

    missing = ImageSpec(steps=[ImageStep(op="add_local_python_source", modules=["nope"])])
    with pytest.raises(ImageBuildError, match="'nope'"):
        await builder.ensure(missing, bundle, lambda _: None)


async def test_failing_step_names_step_and_output(offline: None, tmp_path: Path) -> None:
    image = ImageSpec(steps=[ImageStep(op="run_commands", commands=["echo boom-output; exit 3"])])
    builder = ImageBuilder(tmp_path / "images")
    with pytest.raises(ImageBuildError) as info:
        await builder.ensure(image, tmp_path, lambda _: None)
    message = str(info.value)
    assert "run_commands('echo boom-output; exit 3')" in message
    assert "exit code 3" in message and "boom-output" in message
    assert list((tmp_path / "images").iterdir()) == []

    bad_package = ImageSpec(steps=[ImageStep(op="pip_install", packages=["does-not-exist-anywhere"])])
    with pytest.raises(ImageBuildError, match="uv pip install does-not-exist-anywhere"):
        await builder.ensure(bad_package, tmp_path, lambda _: None)


async def test_unsupported_images(tmp_path: Path) -> None:
    builder = ImageBuilder(tmp_path / "images")
    apt = ImageSpec(steps=[ImageStep(op="apt_install", packages=["ffmpeg"])])
    with pytest.raises(ImageBuildError, match=r"apt_install\('ffmpeg'\) is not supported by the local"):
        await builder.ensure(apt, tmp_path, lambda _: None)
    registry = ImageSpec(steps=[ImageStep(op="from_registry", reference="nvidia/cuda:12.4.0")])
    with pytest.raises(ImageBuildError, match=r"nvidia/cuda:12\.4\.0"):
        await builder.ensure(registry, tmp_path, lambda _: None)
    other = "3.9" if sys.version_info[:2] != (3, 9) else "3.12"
    version = ImageSpec(python_version=other)
    server = "{}.{}".format(*sys.version_info[:2])
    with pytest.raises(ImageBuildError, match=rf"runs images on the server's Python {server}"):
        await builder.ensure(version, tmp_path, lambda _: None)
