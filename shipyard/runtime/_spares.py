"""Spare containers: started ahead of need, one per image interpreter, and handed a spec on demand.

A spare runs `python -m shipyard.container --spare` (in its own sandbox when the runtime has one): it
imports the web stack, then blocks on a pipe until the runtime sends it a ContainerSpec and the
container's whole environment, secrets included. From then on it is that container, on one code path
with a freshly started one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..container._spare import SPARE_FD_ENV
from ..spec import ContainerSpec
from ._logs import LogSink
from ._process import ChildProcess
from ._sandbox import Sandbox

_DRAIN_TIMEOUT = 2.0
_discarding: set[asyncio.Task[None]] = set()


def spare_env(base: dict[str, str], status_fd: int, payload_fd: int) -> dict[str, str]:
    """A spare's environment until it is handed a container: nothing of any container's yet."""
    return {**base, "PYTHONUNBUFFERED": "1", "SHIPYARD_STATUS_FD": str(status_fd),
            SPARE_FD_ENV: str(payload_fd)}


@dataclass(eq=False)
class Spare:
    python: str
    sandboxed: bool
    process: ChildProcess
    sink: LogSink
    pumps: list[asyncio.Task[None]]
    status_r: int
    status_fd: int
    """The status pipe's fd number inside the spare."""
    payload_w: int | None
    block_w: int | None
    """Write end of bwrap's block fd: the spare's command runs once its network is set up."""
    network: asyncio.Task[Sandbox] | None
    _watcher: asyncio.Task[None] | None = field(default=None, init=False)
    _discarded: asyncio.Task[None] | None = field(default=None, init=False)

    def watch(self, on_exit: Callable[[Spare], None]) -> None:
        async def wait() -> None:
            await self.process.wait()
            on_exit(self)

        self._watcher = asyncio.create_task(wait(), name=f"watch-{self.sink.container_id}")

    def take(self) -> bool:
        """Claim it for a container; False (and discarded) when it has exited already."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self.process.returncode is not None:
            self.discard()
            return False
        return True

    def network_ready(self) -> Callable[[], Awaitable[Sandbox]] | None:
        network = self.network
        return None if network is None else lambda: network

    async def send(self, spec: ContainerSpec, env: dict[str, str]) -> None:
        """Hand the spare its container: one JSON payload, then EOF."""
        fd, self.payload_w = self.payload_w, None
        assert fd is not None, "a spare is handed one container"
        data = json.dumps({"spec": spec.model_dump(mode="json"), "env": env}).encode()
        await asyncio.to_thread(_write_and_close, fd, data)

    def close_payload(self) -> None:
        if self.payload_w is not None:
            os.close(self.payload_w)
            self.payload_w = None

    def discard(self) -> asyncio.Task[None]:
        """Kill it and release everything it holds (once)."""
        if self._discarded is None:
            self._discarded = asyncio.create_task(self._release())
            _discarding.add(self._discarded)
            self._discarded.add_done_callback(_discarding.discard)
        return self._discarded

    async def _release(self) -> None:
        self.close_payload()
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        self._kill()
        sandbox = None
        if self.network is not None:
            self.network.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                sandbox = await self.network
        if sandbox is not None:
            await sandbox.close()
        await self.process.wait()
        if self.block_w is not None:
            os.close(self.block_w)
            self.block_w = None
        _, pending = await asyncio.wait(self.pumps, timeout=_DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()
        self.sink.close()
        os.close(self.status_r)

    def _kill(self) -> None:
        if self.sandboxed:
            # bwrap's --die-with-parent takes the namespace down with the outer bwrap.
            self.process.send_signal(signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass  # the spare died: waiting for it to become ready reports its exit
    finally:
        os.close(fd)
