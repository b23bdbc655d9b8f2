"""The image builder: turns an `ImageSpec` into a virtual environment plus copied local files.

An image has two cached layers under `images_dir`, each built in a temporary directory and renamed into
place only once complete (a crash never leaves a half image behind):

- `env-<hash>`: a `uv` virtual environment for the package and command steps. Its key covers only those
  steps (and the server interpreter), so editing a local module never reinstalls packages. Images made of
  `env` and `add_local_*` steps only need no environment at all and run on the server's interpreter.
- `local-<hash>`: the `add_local_*` files copied out of the deploy bundle, keyed by their content, so that
  containers never depend on a bundle directory that a later deploy may replace.

The environment sees the server's own site-packages *after* its own (a `.pth` file), so `shipyard`, FastAPI
and uvicorn import inside the container while packages installed into the image take precedence.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import uv

from shipyard.exceptions import ImageBuildError
from shipyard.spec import ImageSpec, ImageStep, Mount

Progress = Callable[[str], None]

_LOCAL_OPS = ("add_local_python_source", "add_local_dir", "add_local_file")
_READY = "READY"
_TAIL_LINES = 20
# Lines longer than this (progress bars without newlines) are split rather than failing the reader.
_LINE_LIMIT = 1 << 20


@dataclass(frozen=True)
class BuiltImage:
    python: str
    python_path: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)


@dataclass(frozen=True)
class _ServerPython:
    version: str
    """`major.minor`."""
    site_dirs: list[str]


_SERVER_INFO_SCRIPT = (
    "import json, sys, sysconfig; p = sysconfig.get_paths(); "
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
    "'site_dirs': list(dict.fromkeys([p['purelib'], p['platlib']]))}))"
)


def _check_supported(image: ImageSpec, server_version: str) -> None:
    if image.python_version is not None:
        wanted = ".".join(image.python_version.split(".")[:2])
        if wanted != server_version:
            raise ImageBuildError(
                f"The image asks for Python {image.python_version}, but the local runtime runs images on "
                f"the server's Python {server_version}; drop python_version (or set it to "
                f"{server_version}), or start the server with a Python {wanted} interpreter")
    for step in image.steps:
        if step.op == "apt_install":
            raise ImageBuildError(
                f"Image.apt_install({', '.join(map(repr, step.packages))}) is not supported by the local "
                "runtime: install the system packages on the host (apt-get install "
                f"{' '.join(step.packages)}) or remove the step")
        if step.op == "from_registry":
            raise ImageBuildError(
                f"Image.from_registry({step.reference!r}) is not supported by the local runtime, which runs "
                "functions in virtual environments rather than container images: use "
                "Image.debian_slim() with pip_install/uv_pip_install instead")


def _describe(step: ImageStep) -> str:
    if step.op in ("pip_install", "uv_pip_install"):
        return "uv pip install " + " ".join(step.extra_options + step.packages)
    if step.op == "run_commands":
        return "run " + " && ".join(step.commands)
    return step.op


def _environment_key(image: ImageSpec, server_python: str, server_version: str) -> str:
    steps = [step.model_dump(mode="json") for step in image.steps if step.op not in _LOCAL_OPS]
    payload = json.dumps({"python": server_python, "version": server_version, "steps": steps}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _python_source_paths(root: Path, modules: Iterable[str]) -> list[Path]:
    """The package directory or module file of each top-level module under `root`."""
    paths = []
    for module in modules:
        top = module.split(".")[0]
        candidates = [root / top, root / f"{top}.py"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise ImageBuildError(f"add_local_python_source({module!r}): module not found in the deploy "
                                  f"bundle (looked for {top}/ and {top}.py)")
        paths.append(found)
    return paths


def _local_sources(step: ImageStep, bundle_dir: Path) -> tuple[Path, list[Path]]:
    """(root the step's paths are relative to, the paths to copy)."""
    root = bundle_dir / step.bundle_path if step.bundle_path else bundle_dir
    if step.op == "add_local_python_source":
        return root, _python_source_paths(root, step.modules)
    if step.bundle_path is None or step.remote_path is None:
        raise ImageBuildError(f"{step.op} step is missing its bundle_path or remote_path")
    if not root.exists():
        raise ImageBuildError(f"{step.op}: {step.bundle_path!r} is missing from the deploy bundle")
    return root.parent, [root]


def _local_key(local_steps: list[tuple[int, ImageStep]], bundle_dir: Path) -> str:
    digest = hashlib.sha256()
    for index, step in local_steps:
        digest.update(json.dumps([index, step.op, step.modules, step.bundle_path]).encode())
        root, sources = _local_sources(step, bundle_dir)
        for source in sources:
            for file in _files_under(source):
                digest.update(str(file.relative_to(root)).encode() + b"\0")
                digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _copy(source: Path, dest: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def _build_local_layer(local_steps: list[tuple[int, ImageStep]], bundle_dir: Path, tmp: Path) -> None:
    for index, step in local_steps:
        _root, sources = _local_sources(step, bundle_dir)
        for source in sources:
            if step.op == "add_local_python_source":
                _copy(source, tmp / "pysrc" / source.name)
            else:
                _copy(source, tmp / _copied_path(index, step))
    (tmp / _READY).write_text("")


def _publish(tmp: Path, final: Path) -> None:
    """Move a completed build into place; if a concurrent build won the race, keep its result."""
    try:
        tmp.rename(final)
    except OSError:
        if not (final / _READY).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _copied_path(index: int, step: ImageStep) -> str:
    """Where an add_local_dir/add_local_file step's copy lives inside the local layer."""
    if step.op == "add_local_file":
        return f"files/{index}/{Path(step.bundle_path or 'file').name}"
    return f"files/{index}/dir"


def _mount(layer: Path, index: int, step: ImageStep) -> Mount:
    target = step.remote_path or ""
    if step.op == "add_local_file" and target.endswith("/"):
        target += Path(step.bundle_path or "file").name
    return Mount(source=str(layer / _copied_path(index, step)), target=target)


class ImageBuilder:
    def __init__(self, images_dir: Path, server_python: str = sys.executable) -> None:
        self.images_dir = images_dir
        self.server_python = server_python
        self._locks: dict[str, asyncio.Lock] = {}
        self._server_info: _ServerPython | None = None
        images_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of builds interrupted by a crash; nothing points at them.
        for leftover in images_dir.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    async def ensure(self, image: ImageSpec, bundle_dir: Path, progress: Progress) -> BuiltImage:
        """Build the image, or reuse the cached build; `progress` receives build output line by line."""
        server = await self._server_python()
        _check_supported(image, server.version)
        env = {key: value for step in image.steps if step.op == "env" for key, value in step.env.items()}
        python = self.server_python
        if image.needs_environment:
            venv = await self._ensure_environment(image, server, progress)
            python = str(venv / "bin" / "python")
            env = {"VIRTUAL_ENV": str(venv),
                   "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}", **env}
        python_path: list[str] = []
        mounts: list[Mount] = []
        local_steps = [(i, step) for i, step in enumerate(image.steps) if step.op in _LOCAL_OPS]
        if local_steps:
            layer = await self._ensure_local_layer(local_steps, bundle_dir)
            if any(step.op == "add_local_python_source" for _, step in local_steps):
                python_path.append(str(layer / "pysrc"))
            mounts = [_mount(layer, index, step) for index, step in local_steps
                      if step.op != "add_local_python_source"]
        return BuiltImage(python=python, python_path=python_path, env=env, mounts=mounts)

    async def _server_python(self) -> _ServerPython:
        if self._server_info is None:
            if self.server_python == sys.executable:
                paths = sysconfig.get_paths()
                self._server_info = _ServerPython(
                    version="{}.{}".format(*sys.version_info[:2]),
                    site_dirs=list(dict.fromkeys([paths["purelib"], paths["platlib"]])))
            else:
                output = await asyncio.to_thread(
                    subprocess.run, [self.server_python, "-c", _SERVER_INFO_SCRIPT],
                    capture_output=True, text=True, check=False)
                if output.returncode != 0:
                    raise ImageBuildError(f"Cannot run the server interpreter {self.server_python}: "
                                          f"{output.stderr.strip()}")
                info = json.loads(output.stdout)
                self._server_info = _ServerPython(version=info["version"], site_dirs=info["site_dirs"])
        return self._server_info

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _ensure_local_layer(self, local_steps: list[tuple[int, ImageStep]], bundle_dir: Path) -> Path:
        key = "local-" + await asyncio.to_thread(_local_key, local_steps, bundle_dir)
        final = self.images_dir / key
        async with self._lock(key):
            if not (final / _READY).exists():
                tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.images_dir))
                try:
                    await asyncio.to_thread(_build_local_layer, local_steps, bundle_dir, tmp)
                    await asyncio.to_thread(_publish, tmp, final)
                except BaseException:
                    await asyncio.to_thread(shutil.rmtree, tmp, True)
                    raise
        return final

    async def _ensure_environment(self, image: ImageSpec, server: _ServerPython, progress: Progress) -> Path:
        key = "env-" + _environment_key(image, self.server_python, server.version)
        final = self.images_dir / key
        async with self._lock(key):
            if (final / _READY).exists():
                return final / "venv"
            progress(f"Building image {key[4:12]}…")
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.images_dir))
            try:
                await self._build_environment(image, server, tmp, key[4:12], progress)
                await asyncio.to_thread((tmp / _READY).write_text, "")
                await asyncio.to_thread(_publish, tmp, final)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
            progress(f"Built image {key[4:12]}")
        return final / "venv"

    async def _build_environment(self, image: ImageSpec, server: _ServerPython, tmp: Path, short: str,
                                 progress: Progress) -> None:
        uv_bin = uv.find_uv_bin()
        venv = tmp / "venv"
        # --relocatable: the venv is built here and then renamed, so its scripts must not embed this path.
        await _run(["uv venv", uv_bin, "venv", "--relocatable", "--python", self.server_python, str(venv)],
                   cwd=tmp, env=dict(os.environ), progress=progress)
        await asyncio.to_thread(_link_server_site, venv, server)
        venv_python = str(venv / "bin" / "python")
        step_env: dict[str, str] = {}
        for step in image.steps:
            if step.op == "env":
                step_env.update(step.env)
                continue
            if step.op in _LOCAL_OPS:
                continue
            progress(f"Building image {short}: {_describe(step)}")
            env = {**os.environ, **step_env, "VIRTUAL_ENV": str(venv),
                   "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
            if step.op in ("pip_install", "uv_pip_install"):
                if step.packages:
                    await _run([_describe(step), uv_bin, "pip", "install", "--python", venv_python,
                                *step.extra_options, *step.packages], cwd=tmp, env=env, progress=progress)
            elif step.op == "run_commands":
                for command in step.commands:
                    await _run([f"run_commands({command!r})", "bash", "-c", command], cwd=tmp, env=env,
                               progress=progress)
            else:
                raise ImageBuildError(f"Unknown image step {step.op!r}")


def _link_server_site(venv: Path, server: _ServerPython) -> None:
    """Make the server's packages importable after the image's own ones, and `pip` install into the image."""
    site = venv / "lib" / f"python{server.version}" / "site-packages"
    # addsitedir (rather than a bare path line) also runs the server's own .pth files, which is how
    # editable installs of shipyard itself become importable.
    lines = [f"import site; site.addsitedir({d!r})" for d in server.site_dirs]
    (site / "zz_shipyard_server.pth").write_text("\n".join(lines) + "\n")
    # The environment has no pip of its own; without this shim a `pip install` in run_commands would find
    # whichever pip comes next on PATH and install into the wrong environment.
    for name in ("pip", "pip3"):
        shim = venv / "bin" / name
        shim.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
        shim.chmod(0o755)


async def _run(argv: list[str], *, cwd: Path, env: dict[str, str], progress: Progress) -> None:
    """Run argv[1:], streaming output lines to `progress`; argv[0] names the step in errors."""
    name, *command = argv
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, limit=_LINE_LIMIT, start_new_session=True)
    except OSError as exc:
        raise ImageBuildError(f"Image step {name} could not start: {exc}") from exc
    assert proc.stdout is not None
    try:
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:
                raw = await proc.stdout.read(_LINE_LIMIT)
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            progress(line)
        returncode = await proc.wait()
    except BaseException:
        # Cancelled (the deploy was abandoned): take the whole step's process group down with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    if returncode != 0:
        output = "\n".join(tail) or "(no output)"
        raise ImageBuildError(f"Image step {name} failed with exit code {returncode}:\n{output}")

