"""Volumes: directories under `$SHIPYARD_HOME/volumes/<env>/<name>`, bind-mounted into containers.

On one machine a bind mount is the directory itself, so a write is visible to every container at once:
`commit()` and `reload()` need no copying (see `shipyard.sdk._volume`).
"""

from __future__ import annotations

import asyncio
import shutil
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from .._labels import validate_object_name
from ..exceptions import AlreadyExistsError, InvalidError, NotFoundError
from ..runtime._sandbox import INSTALL_HINT
from ..sdk._volume import check_mount_path
from ..spec import AppSpec, FunctionSpec, Mount


class VolumeStore:
    def __init__(self, root: Path, *, mounts_supported: bool) -> None:
        self.root = root
        self.mounts_supported = mounts_supported

    def path(self, environment: str, name: str) -> Path:
        validate_object_name(name, "volume")
        validate_object_name(environment, "environment")
        return self.root / environment / name

    def _existing(self, environment: str, name: str) -> Path:
        path = self.path(environment, name)
        if not path.is_dir():
            raise NotFoundError(f"Volume '{name}' not found in environment '{environment}'; create it with "
                                f"`shipyard volume create {name}` or Volume.from_name({name!r}, "
                                "create_if_missing=True)")
        return path

    def create(self, environment: str, name: str, *, exist_ok: bool) -> bool:
        """Create the volume; True if it was created now."""
        path = self.path(environment, name)
        if path.is_dir():
            if not exist_ok:
                raise AlreadyExistsError(f"Volume '{name}' already exists in environment '{environment}'")
            return False
        path.mkdir(parents=True, exist_ok=True)
        return True

    def list_volumes(self, environment: str) -> list[dict[str, Any]]:
        folder = self.root / environment
        if not folder.is_dir():
            return []
        return [{"name": p.name, "environment": environment, "created_at": p.stat().st_ctime}
                for p in sorted(folder.iterdir()) if p.is_dir()]

    def delete(self, environment: str, name: str) -> None:
        shutil.rmtree(self._existing(environment, name))

    def _file(self, environment: str, name: str, path: str) -> Path:
        base = self._existing(environment, name)
        relative = PurePosixPath("/" + path.lstrip("/"))
        if ".." in relative.parts:
            raise InvalidError(f"Invalid path {path!r} in volume '{name}': '..' is not allowed")
        return base / str(relative).lstrip("/")

    def ls(self, environment: str, name: str, path: str) -> list[dict[str, Any]]:
        target = self._file(environment, name, path)
        base = self._existing(environment, name)
        if not target.exists():
            raise NotFoundError(f"{path!r} not found in volume '{name}'")
        entries = sorted(target.iterdir()) if target.is_dir() else [target]
        listing = []
        for entry in entries:
            info = entry.lstat()
            listing.append({"path": entry.relative_to(base).as_posix(),
                            "type": "dir" if stat.S_ISDIR(info.st_mode) else "file",
                            "size": info.st_size, "mtime": info.st_mtime})
        return listing

    def read_path(self, environment: str, name: str, path: str) -> Path:
        target = self._file(environment, name, path)
        if not target.is_file():
            raise NotFoundError(f"File {path!r} not found in volume '{name}'")
        return target

    def write(self, environment: str, name: str, path: str, data: bytes) -> None:
        target = self._file(environment, name, path)
        if target.is_dir():
            raise InvalidError(f"{path!r} is a directory in volume '{name}'")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)

    def remove(self, environment: str, name: str, path: str, *, recursive: bool) -> None:
        target = self._file(environment, name, path)
        if target == self._existing(environment, name):
            raise InvalidError("Refusing to remove the volume's root; use `shipyard volume delete`")
        if not target.exists():
            raise NotFoundError(f"{path!r} not found in volume '{name}'")
        if target.is_dir():
            if not recursive:
                raise InvalidError(f"{path!r} is a directory: pass --recursive (-r) to remove it")
            shutil.rmtree(target)
        else:
            target.unlink()

    # -- deploy ------------------------------------------------------------------------------------

    def prepare(self, app: AppSpec, environment: str) -> None:
        """Check every function's volumes before a deploy: mount paths, existence, and the sandbox."""
        for function in app.functions:
            for mount_path, name in function.volumes.items():
                check_mount_path(mount_path)
                if not self.mounts_supported:
                    raise InvalidError(f"Function '{function.tag}' mounts volume '{name}', which needs the "
                                       f"container sandbox: {INSTALL_HINT}, then restart the server.")
                if name in function.create_volumes:
                    self.create(environment, name, exist_ok=True)
                else:
                    self._existing(environment, name)

    def mounts(self, function: FunctionSpec, environment: str) -> list[Mount]:
        return [Mount(source=str(self.path(environment, name)), target=target, read_only=False)
                for target, name in function.volumes.items()]


def volume_routes(volumes: VolumeStore, auth: object) -> APIRouter:
    router = APIRouter(prefix="/api/volumes", dependencies=[auth])  # type: ignore[list-item]

    @router.get("")
    def list_volumes(env: str = "main") -> list[dict[str, Any]]:
        return volumes.list_volumes(env)

    @router.post("/{name}")
    def create(name: str, env: str = "main", exist_ok: bool = False) -> dict[str, Any]:
        return {"name": name, "created": volumes.create(env, name, exist_ok=exist_ok)}

    @router.delete("/{name}")
    def delete(name: str, env: str = "main") -> dict[str, bool]:
        volumes.delete(env, name)
        return {"ok": True}

    @router.get("/{name}/ls")
    def ls(name: str, path: str = "/", env: str = "main") -> list[dict[str, Any]]:
        return volumes.ls(env, name, path)

    @router.get("/{name}/files/{path:path}")
    def get_file(name: str, path: str, env: str = "main") -> FileResponse:
        return FileResponse(volumes.read_path(env, name, path), media_type="application/octet-stream")

    @router.put("/{name}/files/{path:path}")
    async def put_file(name: str, path: str, request: Request, env: str = "main") -> dict[str, bool]:
        data = await request.body()
        await asyncio.to_thread(volumes.write, env, name, path, data)
        return {"ok": True}

    @router.delete("/{name}/files/{path:path}")
    def remove(name: str, path: str, env: str = "main", recursive: bool = False) -> dict[str, bool]:
        volumes.remove(env, name, path, recursive=recursive)
        return {"ok": True}

    return router
