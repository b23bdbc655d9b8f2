"""The `modal` → `shipyard` alias, so that scripts written for the hosted product import unchanged.

`modal` and its submodules are fresh module objects filled with shipyard's objects (the same classes, so
`isinstance` and `except` clauses work), rather than shipyard's own modules under a second name: importlib
would otherwise overwrite their `__spec__`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_ROOT = "modal"
_EXCEPTION = "modal.exception"
_SURFACE_SUBMODULES = frozenset({"app", "cls", "functions", "image", "partial_function", "secret", "volume"})
"""Submodules of the hosted SDK that user code imports names from; each exposes the whole public surface."""


def _root_getattr(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"module 'modal' has no attribute {name!r}: Shipyard does not implement modal.{name}"
    )


def _fill_surface(module: ModuleType) -> None:
    import shipyard

    for name in shipyard.__all__:
        setattr(module, name, getattr(shipyard, name))


def _fill_exception(module: ModuleType) -> None:
    from .. import exceptions

    for name, value in vars(exceptions).items():
        if isinstance(value, type) and issubclass(value, exceptions.ShipyardError):
            setattr(module, name, value)
    # The hosted SDK's names for errors that user code catches.
    module.Error = exceptions.ShipyardError  # type: ignore[attr-defined]
    module.RemoteError = exceptions.ServerError  # type: ignore[attr-defined]
    module.ConnectionError = exceptions.ServerError  # type: ignore[attr-defined]


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        if module.__name__ == _EXCEPTION:
            _fill_exception(module)
            return
        _fill_surface(module)
        if module.__name__ == _ROOT:
            module.__getattr__ = _root_getattr  # type: ignore[method-assign]
            module.exception = importlib.import_module(_EXCEPTION)  # type: ignore[attr-defined]


class _ModalFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == _ROOT:
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(), is_package=True)
        if fullname == _EXCEPTION or (
            fullname.startswith(_ROOT + ".") and fullname[len(_ROOT) + 1:] in _SURFACE_SUBMODULES
        ):
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader())
        return None


def install_modal_alias() -> None:
    """Make `import modal` (and `modal.exception`, `from modal import App`, ...) resolve to shipyard.

    Idempotent. Takes precedence over an installed `modal` package that has not been imported yet.
    """
    if not any(isinstance(finder, _ModalFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ModalFinder())
