"""The runtime interface: start a container from a spec, stop it, hear when it exits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..spec import ContainerSpec, Resources


@dataclass(frozen=True)
class ExitInfo:
    container_id: str
    returncode: int | None
    reason: str
    """Human-readable cause: the startup error, the signal, or the crash summary."""


ExitCallback = Callable[[ExitInfo], None]


class Runtime(Protocol):
    """A place to run containers (local processes, Ray actors)."""

    def set_exit_callback(self, callback: ExitCallback) -> None:
        """Called once per container when it exits for any reason after `start` returned."""

    async def start(self, spec: ContainerSpec, secret_env: dict[str, str]) -> str:
        """Start a container and wait until it serves; return its address (a Unix socket path).

        `secret_env` reaches only the container's environment (never argv, logs or files).
        Raises `ContainerError` with the container's own error when it fails to start.
        """
        ...

    async def check_placement(self, resources: Resources) -> None:
        """Raise `InvalidError` when no node of this runtime could ever offer `resources`."""
        ...

    async def node_cpus(self, region: str | None) -> float:
        """The most CPUs one live node (labelled `region`, if given) offers; 0 when no node matches."""
        ...

    def phases(self, container_id: str) -> list[tuple[str, float]]:
        """The startup phases a running container reported on its status pipe: (name, seconds)."""
        ...

    async def stop(self, container_id: str, grace: float) -> None:
        """Ask the container to drain and exit; kill it after `grace` seconds."""
        ...

    async def close(self) -> None:
        """Stop every container (used at server shutdown)."""
        ...
