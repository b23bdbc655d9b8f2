"""The Ray runtime: each container is a Ray actor (`ContainerHost`) placed by Ray on a node.

Shipyard only translates a function's resources into Ray's terms (CPUs, memory, GPUs, custom
resources `accelerator_type:<TYPE>` and `region:<REGION>`); Ray picks the node. The app bundle travels
through Ray's object store; the image is built on the node. Container logs are pulled back into the
control plane's log files while the container runs, so `shipyard app logs` works unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import ContainerError, InvalidError, ServerError
from ..spec import ContainerSpec, Resources
from ._base import ExitCallback, ExitInfo
from ._local import DEFAULT_STARTUP_TIMEOUT
from ._ray_node import ContainerHost

log = logging.getLogger("shipyard.runtime.ray")

DEFAULT_NODE_ROOT = "/tmp/shipyard-ray"
DEFAULT_CPU = 0.125
"""CPUs reserved for a container whose function does not say (as Modal's default)."""
_LABEL = 0.001
"""Amount of a label-like custom resource one container takes: any node carrying it has enough."""
_PLACEMENT_GRACE = 120.0
"""Extra time over the startup timeout that a container may wait for Ray to find it a node."""
_POLL_S = 1.0


def gpu_request(gpu: str) -> tuple[float, str | None]:
    """(GPU count, accelerator type or None for any) of `gpu="H100:2"`; the first of a list is used."""
    first = gpu.split(",")[0].strip()
    kind, _, count = first.partition(":")
    try:
        number = float(count) if count else 1.0
    except ValueError:
        raise ContainerError(f"invalid gpu {gpu!r}: use TYPE or TYPE:N") from None
    kind = kind.strip().upper()
    return number, None if kind in ("", "ANY") else kind


def actor_options(resources: Resources, default_cpu: float = DEFAULT_CPU) -> dict[str, Any]:
    """Ray actor options for a container with these resources (Ray spreads containers across nodes)."""
    custom: dict[str, float] = {}
    options: dict[str, Any] = {
        "num_cpus": resources.cpu if resources.cpu is not None else default_cpu,
        "scheduling_strategy": "SPREAD",
        "max_restarts": 0,
    }
    if resources.memory:
        options["memory"] = resources.memory * 1024 * 1024
    if resources.gpu:
        count, kind = gpu_request(resources.gpu)
        options["num_gpus"] = count
        if kind is not None:
            custom[f"accelerator_type:{kind}"] = _LABEL
    if resources.region:
        custom[f"region:{resources.region}"] = _LABEL
    if custom:
        options["resources"] = custom
    return options


def _required(options: dict[str, Any]) -> dict[str, float]:
    required = {"CPU": float(options["num_cpus"]), **options.get("resources", {})}
    if "num_gpus" in options:
        required["GPU"] = float(options["num_gpus"])
    if "memory" in options:
        required["memory"] = float(options["memory"])
    return {key: value for key, value in required.items() if value > 0}


def _describe(resource: str, amount: float) -> str:
    for prefix, name in (("region:", "region"), ("accelerator_type:", "accelerator")):
        if resource.startswith(prefix):
            return f"{name} {resource.removeprefix(prefix)}"
    if resource == "memory":
        return f"{amount / 2**20:g} MiB memory"
    return f"{amount:g} {resource}"


def check_feasible(options: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
    """Fail now, with a clear error, when no live node could ever hold the container (Ray would wait)."""
    required = _required(options)
    alive = [n for n in nodes if n.get("Alive")]
    if any(all(n["Resources"].get(k, 0.0) >= v for k, v in required.items()) for n in alive):
        return
    regions = sorted({k.removeprefix("region:") for n in alive for k in n["Resources"]
                      if k.startswith("region:")})
    # Name what no node has at all; when each part exists somewhere, no node has them together.
    missing = {k: v for k, v in required.items() if not any(n["Resources"].get(k, 0.0) >= v for n in alive)}
    wanted = ", ".join(_describe(k, v) for k, v in (missing or required).items())
    if not missing:
        wanted = f"all of {wanted} together"
    raise ContainerError(
        f"no Ray node offers {wanted} (live nodes: {len(alive)}; node regions: "
        f"{', '.join(regions) or 'none'}); label a node with `ray start --resources "
        "'{\"region:<name>\": 1}'` or add one with the resources"
    )


def largest_cpus(nodes: list[dict[str, Any]], region: str | None) -> float:
    """The most CPUs one live node (carrying `region:<region>`, if given) has in all."""
    return max((float(n["Resources"].get("CPU", 0.0)) for n in nodes if n.get("Alive")
                and (region is None or f"region:{region}" in n["Resources"])), default=0.0)


def _tar_dir(path: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(path, arcname=".")
    return buffer.getvalue()


@dataclass(eq=False)
class _Handle:
    spec: ContainerSpec
    actor: Any
    node_id: str = ""
    node_ip: str = ""
    phases: list[tuple[str, float]] = field(default_factory=list)
    watcher: asyncio.Task[None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class RayRuntime:
    """Runs containers as Ray actors on a Ray cluster; implements `Runtime`.

    `address` is a Ray cluster address (`host:port`, `ray://...` or None for `RAY_ADDRESS` / the local
    cluster). `node_root` is the directory each node keeps bundles, image builds, sockets and logs in.
    """

    def __init__(self, address: str | None = None, *, node_root: str = DEFAULT_NODE_ROOT,
                 default_cpu: float = DEFAULT_CPU, close_grace: float = 10.0) -> None:
        import ray

        try:
            ray.init(address=address or "auto", namespace="shipyard", log_to_driver=False,
                     logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise ServerError(f"cannot connect to the Ray cluster at {address or 'auto'}: {exc}") from exc
        self._ray: Any = ray
        self._host_class: Any = ray.remote(ContainerHost)
        self._node_root = node_root
        self._default_cpu = default_cpu
        self._close_grace = close_grace
        self._handles: dict[str, _Handle] = {}
        self._bundles: dict[str, tuple[Any, str]] = {}
        self._callback: ExitCallback | None = None
        self._closed = False

    def set_exit_callback(self, callback: ExitCallback) -> None:
        self._callback = callback

    def phases(self, container_id: str) -> list[tuple[str, float]]:
        handle = self._handles.get(container_id)
        return list(handle.phases) if handle else []

    def nodes(self) -> list[dict[str, Any]]:
        """Ray's nodes with their resources, regions, accelerators and Shipyard containers (blocking)."""
        on_node: dict[str, list[str]] = {}
        for cid, handle in self._handles.items():
            on_node.setdefault(handle.node_id, []).append(cid)
        result = []
        for node in self._ray.nodes():
            resources: dict[str, float] = node.get("Resources", {})
            result.append({
                "node_id": node["NodeID"],
                "address": node.get("NodeManagerAddress", ""),
                "alive": bool(node.get("Alive")),
                "resources": {k: v for k, v in resources.items() if not k.startswith("node:")},
                "labels": node.get("Labels", {}),
                "regions": sorted(k.removeprefix("region:") for k in resources if k.startswith("region:")),
                "accelerators": sorted(k.removeprefix("accelerator_type:") for k in resources
                                       if k.startswith("accelerator_type:")),
                "containers": sorted(on_node.get(node["NodeID"], [])),
            })
        return result

    async def check_placement(self, resources: Resources) -> None:
        try:
            nodes = await asyncio.to_thread(self._ray.nodes)
            check_feasible(actor_options(resources, self._default_cpu), nodes)
        except ContainerError as exc:
            raise InvalidError(str(exc)) from None

    async def node_cpus(self, region: str | None) -> float:
        return largest_cpus(await asyncio.to_thread(self._ray.nodes), region)

    # -- start -------------------------------------------------------------------------------------

    async def start(self, spec: ContainerSpec, secret_env: dict[str, str]) -> str:
        if self._closed:
            raise ContainerError("the runtime is shut down")
        options = actor_options(spec.function.resources, self._default_cpu)
        check_feasible(options, await asyncio.to_thread(self._ray.nodes))
        bundle, key = await self._bundle(spec.bundle_dir)
        actor = self._host_class.options(**options).remote(self._node_root)
        handle = _Handle(spec, actor)
        self._handles[spec.container_id] = handle
        limit = (spec.function.startup_timeout or DEFAULT_STARTUP_TIMEOUT) + _PLACEMENT_GRACE
        try:
            async with asyncio.timeout(limit):
                info = await actor.start.remote(spec.model_dump_json(), secret_env, bundle, key)
        except BaseException as exc:
            self._handles.pop(spec.container_id, None)
            self._ray.kill(actor, no_restart=True)
            raise self._start_error(spec, exc, limit) from None
        handle.node_id, handle.node_ip = info["node_id"], info["node_ip"]
        handle.phases = [(str(n), float(s)) for n, s in info["phases"]]
        handle.watcher = asyncio.create_task(self._watch(handle), name=f"ray-watch-{spec.container_id}")
        log.info("container %s ready on Ray node %s at %s", spec.container_id, handle.node_ip,
                 info["address"])
        return str(info["address"])

    def _start_error(self, spec: ContainerSpec, exc: BaseException, limit: float) -> BaseException:
        from ray.exceptions import RayActorError, RayTaskError

        if isinstance(exc, TimeoutError):
            return ContainerError(f"container {spec.container_id} was not placed and ready within "
                                  f"{limit:g} s (the Ray cluster may lack free resources)")
        if isinstance(exc, RayTaskError):
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            return ContainerError(str(cause))
        if isinstance(exc, RayActorError):
            return ContainerError(
                f"the Ray actor of container {spec.container_id} died while starting: {exc}"
            )
        return exc

    async def _bundle(self, bundle_dir: str) -> tuple[Any, str]:
        """The bundle as one object in Ray's store (put once per bundle directory) and its content key."""
        # Bundles of versions no container runs any more leave the object store.
        live = {handle.spec.bundle_dir for handle in self._handles.values()} | {bundle_dir}
        for stale in set(self._bundles) - live:
            del self._bundles[stale]
        if bundle_dir not in self._bundles:
            data = await asyncio.to_thread(_tar_dir, bundle_dir)
            key = hashlib.sha256(data).hexdigest()[:16]
            self._bundles[bundle_dir] = (await asyncio.to_thread(self._ray.put, data), key)
        return self._bundles[bundle_dir]

    # -- exit --------------------------------------------------------------------------------------

    async def _watch(self, handle: _Handle) -> None:
        from ray.exceptions import RayActorError

        offset = 0
        code: int | None = None
        reason = ""
        while True:
            try:
                data, exited = await handle.actor.poll.remote(offset, _POLL_S)
            except RayActorError as exc:
                reason = (f"the Ray node {handle.node_ip} (node {handle.node_id[:12]}) running it was lost: "
                          f"{type(exc).__name__}")
                break
            if data:
                offset += len(data)
                await asyncio.to_thread(_append, Path(handle.spec.log_path), data)
            if exited is not None and not data:
                code, reason = exited
                break
        self._ray.kill(handle.actor, no_restart=True)
        self._handles.pop(handle.spec.container_id, None)
        try:
            if self._callback is not None:
                self._callback(ExitInfo(handle.spec.container_id, code, reason))
        finally:
            handle.finished.set()

    # -- stop --------------------------------------------------------------------------------------

    async def stop(self, container_id: str, grace: float) -> None:
        from ray.exceptions import RayActorError

        handle = self._handles.get(container_id)
        if handle is None:
            return
        with contextlib.suppress(RayActorError):
            await handle.actor.stop.remote(container_id, grace)
        await handle.finished.wait()

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(self.stop(cid, self._close_grace) for cid in list(self._handles)))


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)
