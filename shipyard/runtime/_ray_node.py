"""What runs on a Ray node: one actor per container, wrapping a `LocalRuntime` on that node.

The actor unpacks the app bundle it receives through Ray, builds the image with the same uv-based
`ImageBuilder` as the local server (cached per node), starts the container with a node-local
`LocalRuntime` (same sandbox, logs and status protocol) and exposes the container's Unix socket on the
node's IP through a small TCP forwarder, since the proxy runs on another machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import logging
import os
import shutil
import socket
import tarfile
from pathlib import Path
from typing import Any

from ..exceptions import ContainerError
from ..spec import ContainerSpec
from ._base import ExitInfo
from ._local import LocalRuntime

log = logging.getLogger("shipyard.runtime.ray")

_PIPE_CHUNK = 64 * 1024


def _node_ip() -> str:
    import ray

    ray_api: Any = ray
    return str(ray_api.util.get_node_ip_address())


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _unpack(bundle: bytes, dest: Path) -> None:
    """Unpack once per node; concurrent actors on the node wait on a lock file."""
    if dest.is_dir():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (dest.parent / f".{dest.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_dir():
            return
        tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(dest)


def _lock_images(images_dir: Path) -> io.TextIOWrapper:
    images_dir.mkdir(parents=True, exist_ok=True)
    lock = (images_dir.parent / "images.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class ContainerHost:
    """Ray actor (async): one container on this node. Created by `RayRuntime`, never by users."""

    def __init__(self, node_root: str) -> None:
        self._root = Path(node_root) / _node_id()[:12]
        self._runtime = LocalRuntime(self._root / "run")
        self._runtime.set_exit_callback(self._exited)
        self._exit: asyncio.Future[ExitInfo] | None = None
        self._server: asyncio.Server | None = None
        self._log_path: Path | None = None

    def _exited(self, info: ExitInfo) -> None:
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(info)

    async def start(self, spec_json: str, secret_env: dict[str, str], bundle: bytes,
                    bundle_key: str) -> dict[str, Any]:
        """Start the container; return its TCP address, node and startup phases."""
        self._exit = asyncio.get_running_loop().create_future()
        spec = ContainerSpec.model_validate_json(spec_json)
        spec = await self._localize(spec, bundle, bundle_key)
        self._log_path = Path(spec.log_path)
        await self._runtime.start(spec, secret_env)
        self._server = await asyncio.start_server(
            lambda r, w: self._forward(r, w, spec.socket_path), host=_node_ip(), port=0
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return {
            "address": f"tcp://{host}:{port}",
            "node_id": _node_id(),
            "node_ip": host,
            "phases": self._runtime.phases(spec.container_id),
        }

    async def _localize(self, spec: ContainerSpec, bundle: bytes, bundle_key: str) -> ContainerSpec:
        """The spec with this node's paths: bundle, image environment, work dir, socket, log."""
        from ..server._images import ImageBuilder

        bundle_dir = self._root / "bundles" / bundle_key
        await asyncio.to_thread(_unpack, bundle, bundle_dir)
        images_dir = self._root / "images"
        # One build at a time per node: builders in other actors share the cache directory.
        lock = await asyncio.to_thread(_lock_images, images_dir)
        try:
            builder = ImageBuilder(images_dir)
            built = await builder.ensure(spec.function.image, bundle_dir, lambda line: log.info("%s", line))
        finally:
            lock.close()
        image_targets = {m.target for m in built.mounts}
        volumes = [m for m in spec.mounts if m.target not in image_targets]
        for mount in volumes:
            if not await asyncio.to_thread(Path(mount.source).is_dir):
                raise ContainerError(
                    f"node {_node_ip()} cannot see the volume directory {mount.source} (mounted at "
                    f"{mount.target}): on Ray, volumes live on a shared file system that every node "
                    "mounts at the same path (`shipyard server --volumes-dir`)"
                )
        env = spec.env | built.env
        if (devices := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
            env["CUDA_VISIBLE_DEVICES"] = devices  # Ray's GPU assignment for this actor
        run = self._root / "run"
        return spec.model_copy(update={
            "bundle_dir": str(bundle_dir),
            "python": built.python,
            "python_path": list(built.python_path),
            "env": env,
            "workdir": str(run / spec.container_id),
            "socket_path": str(run / f"{spec.container_id}.sock"),
            "log_path": str(self._root / "logs" / spec.app_id / f"{spec.container_id}.log"),
            "mounts": [*built.mounts, *volumes],
        })

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                       socket_path: str) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_unix_connection(socket_path)
        except OSError:
            client_w.close()
            return
        with contextlib.suppress(OSError):
            client_w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
        upstream_w.close()
        client_w.close()

    async def poll(self, log_offset: int, wait_s: float) -> tuple[bytes, tuple[int | None, str] | None]:
        """New log bytes from `log_offset`, and (return code, reason) once the container exited."""
        exit_info: ExitInfo | None = None
        if self._exit is not None:
            with contextlib.suppress(TimeoutError):
                exit_info = await asyncio.wait_for(asyncio.shield(self._exit), wait_s)
        data = b""
        if self._log_path is not None:
            data = await asyncio.to_thread(_read_from, self._log_path, log_offset)
        return data, None if exit_info is None else (exit_info.returncode, exit_info.reason)

    async def stop(self, container_id: str, grace: float) -> None:
        if self._server is not None:
            self._server.close()
        await self._runtime.stop(container_id, grace)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(1 << 20)
    except FileNotFoundError:
        return b""

