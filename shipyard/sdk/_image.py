"""`Image`: an immutable, chainable description of a function's environment.

Building methods only record steps. Local files (`add_local_*`) are read when the spec is resolved at deploy
time, never at import: the container re-imports the app file, where those local paths do not exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import InvalidError
from ..spec import ImageOp, ImageSpec, ImageStep

STEPS_DIR = "__shipyard_steps__"
"""Folder of the bundle that holds the local files of `add_local_*` steps, one subfolder per digest."""

_SKIP_DIRS = frozenset({"__pycache__", ".git"})
_PYTHON_VERSION = re.compile(r"^3\.\d+(\.\d+)?$")
_LOCAL_OPS: frozenset[ImageOp] = frozenset({"add_local_python_source", "add_local_dir", "add_local_file"})


@dataclass(frozen=True)
class _Step:
    step: ImageStep
    local_path: Path | None = None


def _flatten(args: Iterable[object], what: str) -> list[str]:
    items: list[str] = []
    for arg in args:
        if isinstance(arg, str):
            items.append(arg)
        elif isinstance(arg, list | tuple):
            items.extend(_flatten(arg, what))
        else:
            raise InvalidError(f"Invalid {what} {arg!r}: expected strings or lists of strings.")
    return items


def _walk_files(root: Path, *, only_python: bool) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for filename in sorted(filenames):
            if only_python and not filename.endswith(".py"):
                continue
            path = Path(dirpath, filename)
            files.append((path.relative_to(root).as_posix(), path))
    return files


def _python_source_files(module: str) -> list[tuple[str, Path]]:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise InvalidError(f"add_local_python_source: cannot find module {module!r}: {exc}") from exc
    if found is None:
        raise InvalidError(f"add_local_python_source: no module named {module!r} is importable here.")
    if found.submodule_search_locations:
        files: list[tuple[str, Path]] = []
        for location in found.submodule_search_locations:
            package_files = _walk_files(Path(location), only_python=True)
            files.extend((f"{module}/{rel}", path) for rel, path in package_files)
        return files
    if found.origin is None or not found.origin.endswith(".py"):
        raise InvalidError(f"add_local_python_source: {module!r} is not a Python source module.")
    return [(f"{module}.py", Path(found.origin))]


def _step_files(step: _Step) -> list[tuple[str, Path]]:
    """The local files of an `add_local_*` step, as (path inside the step's folder, local path)."""
    op = step.step.op
    if op == "add_local_python_source":
        return [item for module in step.step.modules for item in _python_source_files(module)]
    assert step.local_path is not None
    path = step.local_path
    if op == "add_local_file":
        if not path.is_file():
            raise InvalidError(f"add_local_file: {path} is not a file.")
        return [(path.name, path)]
    if not path.is_dir():
        raise InvalidError(f"add_local_dir: {path} is not a directory.")
    return _walk_files(path, only_python=False)


def _digest(files: list[tuple[str, Path]]) -> str:
    total = hashlib.sha256()
    for rel, path in files:
        total.update(rel.encode() + b"\0")
        total.update(hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()[:16]


def _pip_options(
    extra_options: str, index_url: str | None, extra_index_url: str | None, find_links: str | None, pre: bool,
) -> list[str]:
    options = shlex.split(extra_options)
    for flag, value in (("--index-url", index_url), ("--extra-index-url", extra_index_url),
                        ("--find-links", find_links)):
        if value is not None:
            options += [flag, value]
    if pre:
        options.append("--pre")
    return options


class Image:
    """An environment for functions. Every method returns a new `Image`; the original is unchanged."""

    def __init__(self, python_version: str | None, steps: tuple[_Step, ...]) -> None:
        self._python_version = python_version
        self._steps = steps

    @classmethod
    def debian_slim(cls, python_version: str | None = None) -> Image:
        if python_version is not None and not (
            isinstance(python_version, str) and _PYTHON_VERSION.match(python_version)
        ):
            raise InvalidError(f"Invalid python_version {python_version!r}: use a version like '3.11'.")
        return cls(python_version, ())

    @classmethod
    def from_registry(cls, tag: str, *, add_python: str | None = None) -> Image:
        """Recorded so that the builder's error can name it: registry images need a container runtime."""
        return cls(add_python, (_Step(ImageStep(op="from_registry", reference=tag)),))

    def _extend(self, step: ImageStep, local_path: Path | None = None) -> Image:
        return Image(self._python_version, (*self._steps, _Step(step, local_path)))

    def pip_install(
        self,
        *packages: str | list[str],
        extra_options: str = "",
        index_url: str | None = None,
        extra_index_url: str | None = None,
        find_links: str | None = None,
        pre: bool = False,
    ) -> Image:
        names = _flatten(packages, "package")
        if not names:
            return self
        options = _pip_options(extra_options, index_url, extra_index_url, find_links, pre)
        return self._extend(ImageStep(op="pip_install", packages=names, extra_options=options))

    def uv_pip_install(
        self,
        *packages: str | list[str],
        extra_options: str = "",
        index_url: str | None = None,
        extra_index_url: str | None = None,
        find_links: str | None = None,
        pre: bool = False,
    ) -> Image:
        names = _flatten(packages, "package")
        if not names:
            return self
        options = _pip_options(extra_options, index_url, extra_index_url, find_links, pre)
        return self._extend(ImageStep(op="uv_pip_install", packages=names, extra_options=options))

    def apt_install(self, *packages: str | list[str]) -> Image:
        names = _flatten(packages, "package")
        if not names:
            return self
        return self._extend(ImageStep(op="apt_install", packages=names))

    def env(self, vars: Mapping[str, str]) -> Image:
        if not isinstance(vars, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in vars.items()
        ):
            raise InvalidError(f"Image.env takes a dict of strings to strings, not {vars!r}.")
        return self._extend(ImageStep(op="env", env=dict(vars)))

    def run_commands(self, *commands: str | list[str]) -> Image:
        cmds = _flatten(commands, "command")
        if not cmds:
            return self
        return self._extend(ImageStep(op="run_commands", commands=cmds))

    def add_local_python_source(self, *modules: str) -> Image:
        names = _flatten(modules, "module name")
        for name in names:
            if not name.isidentifier():
                raise InvalidError(
                    f"add_local_python_source takes top-level module names (like 'mypkg'), not {name!r}."
                )
        return self._extend(ImageStep(op="add_local_python_source", modules=names))

    def add_local_dir(self, local_path: str | os.PathLike[str], remote_path: str) -> Image:
        path = Path(local_path).expanduser().absolute()
        return self._extend(ImageStep(op="add_local_dir", remote_path=remote_path), path)

    def add_local_file(self, local_path: str | os.PathLike[str], remote_path: str) -> Image:
        path = Path(local_path).expanduser().absolute()
        return self._extend(ImageStep(op="add_local_file", remote_path=remote_path), path)

    @contextlib.contextmanager
    def imports(self) -> Iterator[None]:
        """Import packages that exist only in the image: an `ImportError` inside the block is swallowed.

        Every container imports the whole app file, including blocks meant for other functions' images, so
        the error is swallowed there too; it is reported on stderr (the container log) in case it matters.
        """
        try:
            yield
        except ImportError as exc:
            if os.environ.get("SHIPYARD_STATUS_FD"):
                print(f"shipyard: import inside Image.imports() failed: {exc}", file=sys.stderr)

    @property
    def spec(self) -> ImageSpec:
        """The wire form. Reads local files to digest them, so call it only where they exist."""
        steps: list[ImageStep] = []
        for step in self._steps:
            resolved = step.step.model_copy(deep=True)
            if resolved.op in _LOCAL_OPS:
                digest = _digest(_step_files(step))
                resolved.digest = digest
                folder = f"{STEPS_DIR}/{digest}"
                resolved.bundle_path = (
                    f"{folder}/{step.local_path.name}"
                    if resolved.op == "add_local_file" and step.local_path is not None else folder
                )
            steps.append(resolved)
        return ImageSpec(python_version=self._python_version, steps=steps)

    def bundle_files(self) -> list[tuple[str, Path]]:
        """The local files the bundle must carry for this image: (path inside the bundle, local path)."""
        files: list[tuple[str, Path]] = []
        for step in self._steps:
            if step.step.op in _LOCAL_OPS:
                items = _step_files(step)
                folder = f"{STEPS_DIR}/{_digest(items)}"
                files.extend((f"{folder}/{rel}", path) for rel, path in items)
        return files

    def __repr__(self) -> str:
        ops = ", ".join(step.step.op for step in self._steps)
        return f"Image(python_version={self._python_version!r}, steps=[{ops}])"
