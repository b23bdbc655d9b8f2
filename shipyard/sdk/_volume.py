"""`Volume`: a named directory shared by containers, mounted with `volumes={"/path": vol}`.

On one machine the mount is a bind mount of the volume's directory, so every write is visible to every
container at once: `commit()` has nothing to persist and `reload()` nothing to fetch. Both exist so that
code written for the hosted product (write, commit; reload, read) runs unchanged.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from .._client import control_plane, current_environment, quote
from .._labels import validate_object_name
from ..exceptions import InvalidError

_FORBIDDEN_MOUNTS = {"/": "the root directory", "/root": "'/root'", "/tmp": "'/tmp'"}


def check_mount_path(path: str) -> str:
    """The hosted product's rules: a canonical absolute path, and not `/`, `/root` or `/tmp`."""
    posix = PurePosixPath(path).as_posix()
    if not posix.startswith("/") or posixpath.normpath(posix) != posix:
        raise InvalidError(f"Volume mount path {path!r} must be a canonical, absolute path (like '/data').")
    if posix in _FORBIDDEN_MOUNTS:
        where = _FORBIDDEN_MOUNTS[posix]
        raise InvalidError(f"Volume mount path {path!r}: a volume cannot be mounted at {where}.")
    return posix


class Volume:
    def __init__(self, name: str, *, environment_name: str | None, create_if_missing: bool) -> None:
        self.name = name
        self.environment_name = environment_name
        self.create_if_missing = create_if_missing

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None,
                  create_if_missing: bool = False) -> Volume:
        """A reference to a volume; a deploy that mounts it fails if it does not exist (unless created)."""
        validate_object_name(name, "volume")
        return cls(name, environment_name=environment_name, create_if_missing=create_if_missing)

    def __repr__(self) -> str:
        return f"Volume.from_name({self.name!r})"

    def commit(self) -> None:
        """Make this container's writes visible to others: already so with a bind mount (see the module)."""

    def reload(self) -> None:
        """See the writes other containers committed: already so with a bind mount (see the module)."""

    # -- from any Python process, through the control plane ----------------------------------------

    def _params(self) -> dict[str, str]:
        return {"env": self.environment_name or current_environment()}

    def _ensure(self) -> None:
        if self.create_if_missing:
            control_plane().request("POST", f"/api/volumes/{quote(self.name)}",
                                    params=self._params() | {"exist_ok": "true"})

    def listdir(self, path: str = "/") -> list[dict[str, Any]]:
        """Entries of a directory of the volume: dicts with path, type ('file'/'dir'), size, mtime."""
        self._ensure()
        response = control_plane().request("GET", f"/api/volumes/{quote(self.name)}/ls",
                                           params=self._params() | {"path": path})
        entries: list[dict[str, Any]] = response.json()
        return entries

    def read_file(self, path: str) -> Iterator[bytes]:
        self._ensure()
        response = control_plane().request("GET", f"/api/volumes/{quote(self.name)}/files/{path.lstrip('/')}",
                                           params=self._params())
        yield response.content

    def write_file(self, path: str, data: bytes) -> None:
        self._ensure()
        control_plane().request("PUT", f"/api/volumes/{quote(self.name)}/files/{path.lstrip('/')}",
                                params=self._params(), content=data)

    def remove_file(self, path: str, recursive: bool = False) -> None:
        self._ensure()
        control_plane().request("DELETE", f"/api/volumes/{quote(self.name)}/files/{path.lstrip('/')}",
                                params=self._params() | {"recursive": "true" if recursive else "false"})
