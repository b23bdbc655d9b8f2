"""The reconcile loop: desired containers per function (from the autoscaler) vs. running ones.

The scheduler owns the pools the proxy draws from. Each tick it samples every pool, asks the
autoscaler what it wants and applies that through the runtime: start containers, drain and stop
idle ones, replace crashed ones, and retire the containers of superseded app versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._tokens import new_id
from ..autoscaler import ContainerView, Sample, decide
from ..exceptions import ContainerError
from ..proxy import Container, FunctionPool, Metrics, PoolState, RoutingTable, open_upstream
from ..runtime import ExitInfo, Runtime
from ..spec import AutoscalerSettings, ContainerSpec, FunctionSpec, Mount, Route
from ._logs import AppLogs

STABLE_WINDOW = 60.0
PANIC_WINDOW = 6.0
SAMPLE_HISTORY = STABLE_WINDOW
STOP_GRACE = 10.0
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class FunctionDeployment:
    """One function of one app version, with everything needed to start its containers."""

    function_id: str
    app_id: str
    app_name: str
    version: int
    spec: FunctionSpec
    module_name: str
    entry_file: str
    bundle_dir: str
    python: str
    python_path: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    secret_env: dict[str, str] = field(repr=False)
    route: Route | None


@dataclass(frozen=True)
class ContainerSnapshot:
    container_id: str
    state: str
    """`starting`, `running` or `draining`."""
    version: int
    age: float | None
    """Seconds since the container became ready; None while it is starting."""
    in_flight: int


@dataclass(frozen=True)
class FunctionSnapshot:
    """A read-only view of one function's pool, for the dashboard."""

    function_id: str
    tag: str
    version: int
    queued: int
    in_flight: int
    containers: list[ContainerSnapshot]


@dataclass(eq=False)
class _Managed:
    deployment: FunctionDeployment
    pool: FunctionPool
    starting: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    stopping: set[str] = field(default_factory=set)
    samples: deque[Sample] = field(default_factory=deque)
    failures: int = 0
    retry_at: float = 0.0
    retired: bool = False


class Scheduler:
    def __init__(
        self,
        runtime: Runtime,
        table: RoutingTable,
        *,
        run_dir: Path,
        logs: AppLogs,
        clock: Callable[[], float] = time.monotonic,
        tick: float = 0.25,
        max_queue: int = 1000,
        metrics: Metrics | None = None,
    ) -> None:
        self._max_queue = max_queue
        self._metrics = metrics
        self._runtime = runtime
        self._table = table
        self._run_dir = run_dir
        self._logs = logs
        self._clock = clock
        self._tick = tick
        self._functions: dict[str, _Managed] = {}
        self._owners: dict[str, _Managed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        runtime.set_exit_callback(self._on_exit)

    # -- control plane side -----------------------------------------------------------------------

    def apply(self, app_id: str, deployments: list[FunctionDeployment]) -> None:
        """Make `deployments` the current version of the app's functions."""
        wanted = {d.function_id for d in deployments}
        for stale in [m for m in self._functions.values() if m.deployment.app_id == app_id]:
            if stale.deployment.function_id not in wanted:
                self._retire(stale, stopped_message=None)
        for deployment in deployments:
            managed = self._functions.get(deployment.function_id)
            if managed is None:
                pool = FunctionPool(
                    deployment.function_id,
                    version=deployment.version,
                    clock=self._clock,
                    on_demand=self.wake,
                    max_queue=self._max_queue,
                )
                managed = _Managed(deployment, pool)
                self._functions[deployment.function_id] = managed
            else:
                old_route = managed.deployment.route
                if old_route is not None and (
                    deployment.route is None or deployment.route.host_label != old_route.host_label
                ):
                    self._table.remove_route(old_route.host_label)
                managed.deployment = deployment
                managed.pool.version = deployment.version
                managed.pool.unavailable = None
                managed.failures = 0
                managed.retry_at = 0.0
            if deployment.route is not None:
                self._table.set_route(deployment.route, managed.pool)
        self.wake()

    def remove_app(self, app_id: str, *, stopped_message: str | None = None) -> None:
        for managed in [m for m in self._functions.values() if m.deployment.app_id == app_id]:
            self._retire(managed, stopped_message=stopped_message)

    def container_count(self, app_id: str) -> int:
        return sum(
            len(m.pool.containers) + len(m.starting)
            for m in self._functions.values()
            if m.deployment.app_id == app_id
        )

    def snapshot(self, app_id: str) -> list[FunctionSnapshot]:
        """The current functions of the app with their containers (starting, running, draining)."""
        now = self._clock()
        snapshots = []
        for managed in self._functions.values():
            if managed.deployment.app_id != app_id:
                continue
            pool = managed.pool
            containers = [
                ContainerSnapshot(
                    container_id=c.container_id,
                    state="draining" if c.draining or c.container_id in managed.stopping else "running",
                    version=c.version,
                    age=now - c.started_at,
                    in_flight=c.in_flight,
                )
                for c in pool.containers.values()
            ]
            containers.extend(
                ContainerSnapshot(container_id=cid, state="starting", version=managed.deployment.version,
                                  age=None, in_flight=0)
                for cid in managed.starting
            )
            snapshots.append(FunctionSnapshot(
                function_id=managed.deployment.function_id,
                tag=managed.deployment.spec.tag,
                version=managed.deployment.version,
                queued=pool.queued,
                in_flight=pool.in_flight,
                containers=containers,
            ))
        return snapshots

    def pool_states(self) -> list[PoolState]:
        """Every function's pool, for the metrics scrape."""
        return [
            PoolState(m.deployment.app_name, m.deployment.spec.tag, m.pool, len(m.starting))
            for m in self._functions.values()
        ]

    def set_autoscaler(self, function_id: str, settings: AutoscalerSettings) -> None:
        """Change a running function's scaling settings; the next reconcile applies them."""
        managed = self._functions.get(function_id)
        if managed is None:
            raise ContainerError(f"function {function_id} is not running")
        spec = managed.deployment.spec.model_copy(update={"autoscaler": settings})
        managed.deployment = dataclasses.replace(managed.deployment, spec=spec)
        self.wake()

    def running(self) -> list[tuple[FunctionDeployment, int, int, int]]:
        """(deployment, containers serving, starting, draining) per function.

        For endpoint status and the usage meter: every container counted here is running.
        """
        result = []
        for m in self._functions.values():
            serving = sum(1 for c in m.pool.containers.values() if not c.draining)
            result.append((m.deployment, serving, len(m.starting), len(m.pool.containers) - serving))
        return result

    def pool(self, function_id: str) -> FunctionPool | None:
        """The pool of a function of a live app, for calls from Python (they queue like web requests)."""
        managed = self._functions.get(function_id)
        return None if managed is None else managed.pool

    def wake(self) -> None:
        self._wake.set()

    async def check_placement(self, spec: FunctionSpec) -> None:
        """Refuse at deploy time a function no runtime node could ever run (InvalidError)."""
        await self._runtime.check_placement(spec.resources)

    async def node_cpus(self, region: str | None) -> float:
        """The most CPUs one runtime node (in `region`, if given) offers a container."""
        return await self._runtime.node_cpus(region)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick)
            self._wake.clear()
            self.reconcile()

    async def close(self) -> None:
        for managed in list(self._functions.values()):
            self._retire(managed, stopped_message=None)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._runtime.close()

    # -- the loop -----------------------------------------------------------------------------------

    def reconcile(self) -> None:
        now = self._clock()
        for managed in list(self._functions.values()):
            self._reconcile_function(managed, now)

    def _reconcile_function(self, managed: _Managed, now: float) -> None:
        pool = managed.pool
        samples = managed.samples
        samples.append(Sample(at=now, in_flight=pool.in_flight, queued=pool.queued))
        while samples and samples[0].at < now - SAMPLE_HISTORY:
            samples.popleft()
        version = managed.deployment.version
        self._retire_old_versions(managed)
        if managed.retry_at > now:
            return
        if pool.unavailable is not None and not pool.containers and not managed.starting:
            pool.unavailable = None  # backoff over: the next request may try a fresh container
        views = [
            ContainerView(
                container_id=c.container_id,
                state="draining" if c.draining else "ready",
                in_flight=c.in_flight,
                idle_since=c.idle_since,
                started_at=c.started_at,
            )
            for c in pool.containers.values()
            if c.version == version and c.container_id not in managed.stopping
        ]
        views.extend(
            ContainerView(container_id=cid, state="starting", in_flight=0, idle_since=None, started_at=now)
            for cid in managed.starting
        )
        settings = managed.deployment.spec.autoscaler
        # Past demand must not keep a container longer than the function asked for, so the
        # averaging windows never exceed its scaledown window.
        stable_window = max(0.5, min(STABLE_WINDOW, settings.scaledown_window))
        decision = decide(
            settings,
            list(samples),
            views,
            now,
            stable_window=stable_window,
            panic_window=min(PANIC_WINDOW, stable_window),
        )
        for _ in range(decision.start):
            self._start(managed)
        for container_id in decision.stop:
            self._stop(managed, container_id)

    def _retire_old_versions(self, managed: _Managed) -> None:
        version = managed.deployment.version
        current_ready = any(
            c.version == version and not c.draining for c in managed.pool.containers.values()
        )
        for container in list(managed.pool.containers.values()):
            if container.version != version and not container.draining and (
                current_ready or container.in_flight == 0
            ):
                self._stop(managed, container.container_id)

    # -- starting and stopping ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start(self, managed: _Managed) -> None:
        deployment = managed.deployment
        container_id = new_id("ctr")
        workdir = self._run_dir / container_id
        spec = ContainerSpec(
            container_id=container_id,
            app_id=deployment.app_id,
            app_name=deployment.app_name,
            version=deployment.version,
            function_id=deployment.function_id,
            function=deployment.spec,
            module_name=deployment.module_name,
            entry_file=deployment.entry_file,
            bundle_dir=deployment.bundle_dir,
            python=deployment.python,
            python_path=deployment.python_path,
            env=deployment.env,
            workdir=str(workdir),
            socket_path=str(self._run_dir / f"{container_id}.sock"),
            log_path=str(self._logs.container_log(deployment.app_id, container_id)),
            mounts=deployment.mounts,
        )
        self._owners[container_id] = managed
        managed.starting[container_id] = self._spawn(self._run_container(managed, spec))

    async def _run_container(self, managed: _Managed, spec: ContainerSpec) -> None:
        deployment = managed.deployment
        started = self._clock()
        self._logs.platform(spec.app_id, f"starting container {spec.container_id} for {spec.function.tag}")
        try:
            address = await self._runtime.start(spec, deployment.secret_env)
        except ContainerError as exc:
            self._owners.pop(spec.container_id, None)
            managed.failures += 1
            managed.retry_at = self._clock() + min(MAX_BACKOFF, 0.5 * 2 ** (managed.failures - 1))
            message = f"container {spec.container_id} failed to start: {exc}"
            self._logs.platform(spec.app_id, message)
            if not managed.pool.containers:
                managed.pool.fail_waiters(message)
            return
        finally:
            managed.starting.pop(spec.container_id, None)
        self._record_cold_start(spec, self._clock() - started)
        managed.failures = 0
        container = Container(
            container_id=spec.container_id,
            address=address,
            upstream=open_upstream(address),
            version=spec.version,
            max_inputs=spec.function.autoscaler.max_inputs,
            started_at=self._clock(),
        )
        managed.pool.add(container)
        if managed.retired:
            self._stop(managed, spec.container_id)

    def _record_cold_start(self, spec: ContainerSpec, seconds: float) -> None:
        reported = self._runtime.phases(spec.container_id)
        # What the container did not account for is the runtime's: process, sandbox and interpreter start.
        phases = [("spawn", max(0.0, seconds - sum(s for _name, s in reported))), *reported]
        if self._metrics is not None:
            self._metrics.cold_start(spec.app_name, spec.function.tag, seconds, phases)
        self._logs.platform(
            spec.app_id,
            f"container {spec.container_id} ready in {seconds:.3f} s (cold start: "
            + ", ".join(f"{name} {phase_s:.3f} s" for name, phase_s in phases) + ")",
        )

    def _stop(self, managed: _Managed, container_id: str) -> None:
        if container_id in managed.stopping:
            return
        managed.stopping.add(container_id)
        # Draining now, not when the task first runs: no request may be handed to it in between.
        managed.pool.mark_draining(container_id)
        self._spawn(self._drain_and_stop(managed, container_id))

    async def _drain_and_stop(self, managed: _Managed, container_id: str) -> None:
        container = managed.pool.mark_draining(container_id)
        try:
            if container is not None:
                with contextlib.suppress(TimeoutError):
                    while container.in_flight > 0 and container.exit_reason is None:
                        await asyncio.wait_for(
                            container.became_idle.wait(), managed.deployment.spec.timeout
                        )
            await self._runtime.stop(container_id, STOP_GRACE)
        finally:
            managed.pool.remove(container_id)
            managed.stopping.discard(container_id)
            self._owners.pop(container_id, None)
            if container is not None:
                await container.aclose()
            self._logs.platform(managed.deployment.app_id, f"container {container_id} stopped")

    def _retire(self, managed: _Managed, *, stopped_message: str | None) -> None:
        managed.retired = True
        self._functions.pop(managed.deployment.function_id, None)
        if managed.deployment.route is not None:
            self._table.remove_route(managed.deployment.route.host_label, stopped_message=stopped_message)
        managed.pool.fail_waiters(stopped_message or "the function was removed")
        for container_id in list(managed.pool.containers):
            self._stop(managed, container_id)
        for task in managed.starting.values():
            task.cancel()

    def _on_exit(self, info: ExitInfo) -> None:
        managed = self._owners.pop(info.container_id, None)
        if managed is None or info.container_id in managed.stopping:
            return
        container = managed.pool.containers.get(info.container_id)
        managed.pool.remove(info.container_id, reason=info.reason)
        self._logs.platform(
            managed.deployment.app_id, f"container {info.container_id} exited unexpectedly: {info.reason}"
        )
        if container is not None:
            self._spawn(container.aclose())
        self.wake()
