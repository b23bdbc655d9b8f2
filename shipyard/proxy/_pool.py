"""Container slots of one function: the queue, least-loaded choice and hand-off to waiters.

The pool is the data plane's view of a function. The scheduler adds containers when they are
ready and marks them draining before it stops them; the proxy acquires and releases slots.
Everything here runs on the event loop and does no I/O.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ..exceptions import ContainerError
from ._upstream import Upstream


@dataclass(eq=False)
class Container:
    container_id: str
    address: str
    upstream: httpx.AsyncClient
    version: int
    max_inputs: int
    started_at: float
    in_flight: int = 0
    draining: bool = False
    idle_since: float | None = None
    exit_reason: str | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    became_idle: asyncio.Event = field(default_factory=asyncio.Event)
    connections: Upstream = field(init=False)
    """The proxy's own keep-alive connections (`upstream` serves the other clients: calls, websockets)."""

    def __post_init__(self) -> None:
        self.connections = Upstream(self.address)

    async def aclose(self) -> None:
        await self.connections.aclose()
        await self.upstream.aclose()

    @property
    def has_free_slot(self) -> bool:
        return not self.draining and self.exit_reason is None and self.in_flight < self.max_inputs


class QueueFull(ContainerError):
    """The function's queue is at its bound; the client should retry later."""


class FunctionPool:
    def __init__(
        self,
        function_id: str,
        *,
        version: int,
        clock: Callable[[], float],
        on_demand: Callable[[], None],
        max_queue: int = 1000,
    ) -> None:
        self.function_id = function_id
        self.version = version
        self.containers: dict[str, Container] = {}
        self.max_queue = max_queue
        self._clock = clock
        self._on_demand = on_demand
        self._waiters: deque[asyncio.Future[Container]] = deque()
        self.unavailable: str | None = None
        """Set while the function cannot start containers (crash loop); new requests fail fast with it."""

    # -- proxy side ---------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    @property
    def in_flight(self) -> int:
        return sum(c.in_flight for c in self.containers.values())

    def acquire_nowait(self) -> Container | None:
        """A free slot if one exists now (the proxy's fast path, which records no queue wait)."""
        container = self._pick()
        if container is not None:
            self._take(container)
        return container

    async def acquire(self) -> Container:
        container = self.acquire_nowait()
        if container is not None:
            return container
        if self.unavailable is not None:
            raise ContainerError(self.unavailable)
        if self.queued >= self.max_queue:
            raise QueueFull(f"its queue is full ({self.max_queue} requests waiting)")
        waiter: asyncio.Future[Container] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._on_demand()
        try:
            return await waiter
        except asyncio.CancelledError:
            # The client went away; if a slot was handed to us meanwhile, give it back.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise

    def release(self, container: Container) -> None:
        container.in_flight -= 1
        if container.in_flight == 0:
            container.idle_since = self._clock()
            container.became_idle.set()
        self._dispatch()

    # -- scheduler side -----------------------------------------------------------------------

    def add(self, container: Container) -> None:
        container.idle_since = self._clock()
        container.became_idle.set()
        self.containers[container.container_id] = container
        self.unavailable = None
        self._dispatch()

    def mark_draining(self, container_id: str) -> Container | None:
        container = self.containers.get(container_id)
        if container is not None:
            container.draining = True
        return container

    def remove(self, container_id: str, reason: str | None = None) -> None:
        container = self.containers.pop(container_id, None)
        if container is None:
            return
        if reason is not None and container.exit_reason is None:
            container.exit_reason = reason
        container.exited.set()
        container.became_idle.set()

    def fail_waiters(self, message: str) -> None:
        """Fail every queued request: no container can start to serve them."""
        self.unavailable = message
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ContainerError(message))

    @property
    def has_waiters(self) -> bool:
        return self.queued > 0

    # -- internals ----------------------------------------------------------------------------

    def _pick(self) -> Container | None:
        """The busiest container with a free slot, preferring the current version.

        Packing rather than spreading: under steady load the containers the load does not need go
        idle, so the autoscaler can drain and stop them (spread evenly, none would ever be idle).
        """
        best: Container | None = None
        for container in self.containers.values():
            if not container.has_free_slot:
                continue
            if best is None or (container.version == self.version, container.in_flight) > (
                best.version == self.version,
                best.in_flight,
            ):
                best = container
        return best

    def _take(self, container: Container) -> None:
        container.in_flight += 1
        container.idle_since = None
        container.became_idle.clear()

    def _dispatch(self) -> None:
        while self._waiters:
            container = self._pick()
            if container is None:
                return
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._take(container)
            waiter.set_result(container)
