"""Importing app files: in the container (from the bundle) and at deploy time (from the user's folder)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .._labels import validate_object_name
from ..exceptions import ExecutionError, InvalidError, ShipyardError
from ..spec import AppSpec, DeployRequest
from ._alias import install_modal_alias
from ._app import App
from ._bundle import make_bundle

_SHIPYARD_DIR = Path(__file__).resolve().parent.parent
_NOT_LOCAL_PARTS = frozenset(
    {".venv", "venv", "site-packages", "dist-packages", "__pycache__", "node_modules"}
)


def import_app_module(bundle_dir: str, entry_file: str, module_name: str) -> ModuleType:
    """Import `bundle_dir/entry_file` as `module_name`, with `bundle_dir` first on `sys.path`.

    Installs the `modal` alias first. Exceptions raised by the user's code propagate unchanged.
    """
    install_modal_alias()
    if bundle_dir in sys.path:
        sys.path.remove(bundle_dir)
    sys.path.insert(0, bundle_dir)
    path = Path(bundle_dir, entry_file)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExecutionError(f"Cannot import {path}: not a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _is_loader_frame(filename: str) -> bool:
    return filename.startswith("<frozen importlib") or Path(filename).resolve().is_relative_to(_SHIPYARD_DIR)


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of user code on, without the loader's frames."""
    report = traceback.TracebackException.from_exception(exc)
    frames = list(report.stack)
    start = next((i for i, frame in enumerate(frames) if not _is_loader_frame(frame.filename)), len(frames))
    report.stack = traceback.StackSummary.from_list(frames[start:])
    return "".join(report.format()).rstrip()


def _user_location(exc: BaseException) -> str:
    """`file:line` of the innermost user frame, where a decorator was misused."""
    frames = [
        frame for frame in traceback.extract_tb(exc.__traceback__) if not _is_loader_frame(frame.filename)
    ]
    if not frames:
        return ""
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"


def _module_name(entry: Path) -> str:
    """The entry file's stem, unless importing it under that name would replace another module."""
    stem = re.sub(r"\W", "_", entry.stem)
    taken = stem in sys.stdlib_module_names or stem in sys.modules or stem in ("modal", "shipyard")
    if stem.isidentifier() and not taken:
        return stem
    return f"_shipyard_app_{stem}"


def _is_local_file(path: Path, root: Path) -> bool:
    if path.suffix != ".py" or not path.is_relative_to(root) or path.is_relative_to(_SHIPYARD_DIR):
        return False
    if any(part in _NOT_LOCAL_PARTS for part in path.relative_to(root).parts):
        return False
    # An interpreter or virtual environment kept inside the project folder is not project code.
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return not any(
        path.is_relative_to(prefix) for prefix in prefixes if prefix != root and prefix.is_relative_to(root)
    )


def _package_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in _NOT_LOCAL_PARTS and not d.startswith(".")]
        found.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    return found


def _pick_app(module: ModuleType, filename: str) -> App:
    named = getattr(module, "app", None)
    if isinstance(named, App):
        return named
    apps: dict[int, tuple[str, App]] = {}
    for variable, value in vars(module).items():
        if isinstance(value, App):
            apps.setdefault(id(value), (variable, value))
    if len(apps) == 1:
        return next(iter(apps.values()))[1]
    if not apps:
        raise InvalidError(f"No App found in {filename}: define one, for example `app = App(\"my-app\")`.")
    names = ", ".join(sorted(variable for variable, _ in apps.values()))
    raise InvalidError(f"{filename} defines several Apps ({names}): name the one to deploy `app`.")


@dataclass
class LoadedApp:
    app: App
    entry: Path
    module_name: str
    local_modules: list[tuple[str, Path]]
    """Local Python files the import pulled in: (path relative to the entry's folder, local path)."""


@contextlib.contextmanager
def _loading(path: Path) -> Iterator[LoadedApp]:
    """Import a user's app file in this process; on exit, forget its local modules and restore `sys.path`."""
    entry = path.expanduser().absolute()
    if not entry.is_file():
        raise ExecutionError(f"App file not found: {path}")
    entry = entry.resolve()
    root = entry.parent
    module_name = _module_name(entry)
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    local_names: list[str] = []
    try:
        try:
            module = import_app_module(str(root), entry.name, module_name)
        except ShipyardError as exc:
            location = _user_location(exc) or entry.name
            raise type(exc)(f"{location}: {exc}") from None
        except SyntaxError as exc:
            detail = "".join(traceback.format_exception_only(exc)).rstrip()
            where = Path(exc.filename).name if exc.filename else entry.name
            raise ExecutionError(f"Syntax error in {where}:\n{detail}") from None
        except (Exception, SystemExit) as exc:
            raise ExecutionError(f"Failed to import {entry.name}:\n{_user_traceback(exc)}") from None
        files: set[Path] = set()
        for name in set(sys.modules) - modules_before:
            filename = getattr(sys.modules[name], "__file__", None)
            if name != module_name and filename:
                file = Path(filename).resolve()
                if _is_local_file(file, root):
                    local_names.append(name)
                    files.add(file)
                    if file.name == "__init__.py":
                        # Like the hosted product, a local package travels whole, so that modules it
                        # imports lazily (inside a handler) exist in the container too.
                        files.update(p for p in _package_files(file.parent) if _is_local_file(p, root))
        app = _pick_app(module, entry.name)
        yield LoadedApp(
            app=app, entry=entry, module_name=module_name,
            local_modules=sorted((file.relative_to(root).as_posix(), file) for file in files),
        )
    finally:
        sys.path[:] = path_before
        for name in [module_name, *local_names]:
            sys.modules.pop(name, None)


def open_app(path: Path) -> contextlib.AbstractContextManager[LoadedApp]:
    """Import the app file for code that runs it in this process (`shipyard run`); forgotten on exit."""
    return _loading(path)


def load_app(path: Path) -> App:
    """Import the app file at `path` and return its App: the variable `app`, else the only App in it.

    Raises `ExecutionError` (file missing, syntax error, failing import, with the user's traceback) or
    `InvalidError` (no App, several Apps, a misused decorator, with the file and line).
    """
    with _loading(path) as loaded:
        return loaded.app


def build_deploy_request(
    path: Path, *, name: str | None = None, ephemeral: bool = False, environment: str = "main",
) -> DeployRequest:
    """Load the app file and describe it for `POST /api/apps/deploy`, with its local files bundled."""
    with _loading(path) as loaded:
        app = loaded.app
        entry = loaded.entry
        if name is None and app.name is None:
            app_name = entry.stem
            try:
                validate_object_name(app_name, "app")
            except InvalidError as exc:
                raise InvalidError(
                    f"{exc} (the name comes from the file name; pass --name, or App(name))."
                ) from None
        else:
            app_name = name or app.name or entry.stem
            validate_object_name(app_name, "app")
        if not app.registered_functions:
            raise InvalidError(
                f"App {app_name!r} in {entry.name} has no functions: decorate one with `@app.function()`."
            )
        app.web_labels(app_name)
        files = [(entry.name, entry), *loaded.local_modules]
        images = {id(fn.image): fn.image for fn in app.registered_functions.values()}
        try:
            functions = [fn.spec for fn in app.registered_functions.values()]
            for image in images.values():
                files.extend(image.bundle_files())
            bundle = make_bundle(files)
        except OSError as exc:
            raise InvalidError(f"Cannot read a local file of {entry.name}: {exc}") from None
        return DeployRequest(
            app=AppSpec(
                name=app_name, entry_file=entry.name, module_name=loaded.module_name, functions=functions,
            ),
            bundle=bundle,
            ephemeral=ephemeral,
            environment=environment,
        )
