"""The local runtime: each container is an OS process on this machine.

With bubblewrap and slirp4netns installed every container runs in its own user, network and PID
namespaces (see `_sandbox`); without them it is a plain process in its own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..exceptions import ContainerError
from ..spec import ContainerSpec, Mount, Resources
from ._base import ExitCallback, ExitInfo
from ._logs import LogSink, open_pipe_reader, pump
from ._process import ChildProcess
from ._sandbox import (
    INSTALL_HINT,
    Sandbox,
    StartupFailure,
    bwrap_argv,
    missing_tools,
    resolv_conf_override,
    setup_network,
)
from ._spares import Spare, spare_env

log = logging.getLogger("shipyard.runtime")

CONTAINER_ENTRYPOINT: tuple[str, ...] = ("-m", "shipyard.container")
DEFAULT_STARTUP_TIMEOUT = 300.0
_FAILED_EXIT_WAIT = 10.0
"""How long a container that reported `failed` gets to exit by itself."""
_DRAIN_TIMEOUT = 2.0
_REFILL_DELAY = 0.5
"""Seconds after a container started before the next spare for its interpreter starts."""
_STATUS_LINE_LIMIT = 4 * 1024 * 1024
"""A `failed` event carries a traceback: allow long status lines."""

Phase = tuple[str, float]


def container_env(spec: ContainerSpec, secret_env: dict[str, str], status_fd: int) -> dict[str, str]:
    """The container's whole environment: nothing of the server's own beyond a minimal base."""
    env = base_env(spec.python)
    env["TMPDIR"] = str(Path(spec.workdir) / "tmp")
    env.update(spec.env)
    env.update(secret_env)
    python_path = [*spec.python_path, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["PYTHONUNBUFFERED"] = "1"
    env["SHIPYARD_STATUS_FD"] = str(status_fd)
    return env


def base_env(python: str) -> dict[str, str]:
    # The image's interpreter comes first on PATH, so `python` in a user's subprocess is the image's.
    return {
        "PATH": os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", os.defpath)]),
        "HOME": os.environ.get("HOME") or str(Path.home()),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }


def describe_exit(returncode: int, *, sandboxed: bool) -> tuple[int, str]:
    """(normalized return code, text); a signal death is reported as a negative code in both modes."""
    # bwrap reports a command killed by signal N as exit status 128 + N.
    if sandboxed and returncode > 128:
        with contextlib.suppress(ValueError):
            returncode = -signal.Signals(returncode - 128).value
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return returncode, f"killed by signal {name}"
    return returncode, f"exited with code {returncode}"


@dataclass(eq=False)
class _Container:
    spec: ContainerSpec
    process: ChildProcess
    sink: LogSink
    pumps: list[asyncio.Task[None]]
    sandbox: Sandbox | None = None
    phases: list[Phase] = field(default_factory=list)
    stop_grace: float | None = None
    killed_after_grace: bool = False
    reaper: asyncio.Task[None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class LocalRuntime:
    """Runs containers as local processes; implements `Runtime`.

    `entrypoint` is what follows the image's interpreter on the command line (before the spec path).
    With `spares`, one container per image interpreter is kept started ahead of need (see `_spares`);
    it needs the real entrypoint, which knows `--spare`.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        sandbox: bool | None = None,
        entrypoint: Sequence[str] = CONTAINER_ENTRYPOINT,
        close_grace: float = 10.0,
        spares: bool = False,
    ) -> None:
        missing = missing_tools()
        if sandbox and missing:
            raise ContainerError(f"the container sandbox needs {' and '.join(missing)}: {INSTALL_HINT}")
        if sandbox is None:
            sandbox = not missing
            if missing:
                log.warning(
                    "%s not found: containers run as plain processes sharing this machine's network "
                    "(two web servers cannot bind the same port); %s",
                    " and ".join(missing), INSTALL_HINT,
                )
        self.sandboxed = sandbox
        self._entrypoint = tuple(entrypoint)
        self._close_grace = close_grace
        self._resolv_conf: tuple[Path, str] | None = None
        if sandbox:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._resolv_conf = resolv_conf_override(run_dir)
        self._containers: dict[str, _Container] = {}
        self._callback: ExitCallback | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._run_dir = run_dir
        self._spares_enabled = spares
        self._spares: dict[str, Spare] = {}
        self._spare_count = 0
        self._no_spare: set[str] = set()
        """Interpreters whose spare died unused: their containers start fresh."""

    def set_exit_callback(self, callback: ExitCallback) -> None:
        self._callback = callback

    def phases(self, container_id: str) -> list[Phase]:
        """Startup phases the container reported, (name, seconds), while it runs."""
        container = self._containers.get(container_id)
        return list(container.phases) if container else []

    async def check_placement(self, resources: Resources) -> None:
        """Everything is placed on this machine; GPU and region checks belong to the endpoint service."""

    async def node_cpus(self, region: str | None) -> float:
        """This machine's cores: region labels of the local node are the endpoint service's concern."""
        return float(os.cpu_count() or 1)

    def container_ids(self) -> list[str]:
        """The containers running (or starting) now."""
        return sorted(self._containers)

    # -- start ------------------------------------------------------------------------------------

    async def start(self, spec: ContainerSpec, secret_env: dict[str, str]) -> str:
        container_id = spec.container_id
        if self._closed:
            raise ContainerError("the runtime is shut down")
        if container_id in self._containers:
            raise ContainerError(f"container {container_id} is already running")
        began = asyncio.get_running_loop().time()
        spec_file, log_file = await asyncio.to_thread(_prepare, spec)
        spare = self._take_spare(spec, secret_env)
        network: Callable[[], Awaitable[Sandbox]] | None = None
        send: Callable[[], Awaitable[None]] | None = None
        if spare is None:
            sink = LogSink(container_id, log_file)
            status_r, status_w = os.pipe()
            try:
                container, net_fds = await self._spawn(spec, spec_file, sink, secret_env, status_w)
            except BaseException:
                os.close(status_r)
                sink.close()
                raise
            finally:
                os.close(status_w)
            block_w = net_fds[1] if net_fds is not None else None
            if net_fds is not None:
                info_r, slirp_log = net_fds[0], Path(spec.workdir) / "slirp4netns.log"
                network = lambda: setup_network(info_r, net_fds[1], slirp_log)  # noqa: E731
        else:
            spare.sink.retarget(container_id, log_file)
            container = _Container(spec, spare.process, spare.sink, spare.pumps)
            status_r, block_w, network = spare.status_r, spare.block_w, spare.network_ready()
            send = lambda: self._hand_over(container, spare, secret_env, began)  # noqa: E731
        self._containers[container_id] = container
        try:
            await self._bring_up(container, status_r, network, send)
        except BaseException as exc:
            await asyncio.shield(self._reap(container))
            if isinstance(exc, StartupFailure):
                raise ContainerError(self._failure_text(container, exc)) from None
            raise
        finally:
            # Closed only now: an early EOF on bwrap's block fd would let the command run unnetworked.
            if block_w is not None:
                os.close(block_w)
            if spare is not None:
                spare.close_payload()
            # Not now: a spare's imports would compete for the CPU with the container's first requests.
            asyncio.get_running_loop().call_later(_REFILL_DELAY, self._refill, spec.python)
        task = asyncio.create_task(self._watch(container), name=f"watch-{container_id}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        log.info("container %s ready; phases: %s", container_id,
                 ", ".join(f"{name} {seconds:.3f} s" for name, seconds in container.phases) or "none")
        return spec.socket_path

    async def _hand_over(self, container: _Container, spare: Spare, secret_env: dict[str, str],
                         began: float) -> None:
        env = container_env(container.spec, secret_env, spare.status_fd)
        # The spare reported on its status fd since it started; it knows the number already.
        env.pop("SHIPYARD_STATUS_FD")
        await spare.send(container.spec, env)
        # Named so in the phase log: this cold start took a spare (its `spawn` is only what is left over).
        container.phases.append(("spare", asyncio.get_running_loop().time() - began))

    # -- spares -------------------------------------------------------------------------------------

    def _take_spare(self, spec: ContainerSpec, secret_env: dict[str, str]) -> Spare | None:
        # Mounts are bind mounts of the sandbox, fixed when it starts; spares have none. Variables the
        # interpreter or the dynamic loader read only at startup would come too late for a spare.
        if spec.mounts or any(_read_at_startup(name) for name in (*spec.env, *secret_env)):
            return None
        spare = self._spares.pop(spec.python, None)
        if spare is not None and not spare.take():
            self._no_spare.add(spec.python)
            return None
        return spare

    def _refill(self, python: str) -> None:
        if (not self._spares_enabled or self._closed or python in self._spares
                or python in self._no_spare):
            return
        self._spare_count += 1
        name = f"spare-{self._spare_count}"
        workdir = self._run_dir / "spares" / name
        status_r, status_w = os.pipe()
        payload_r, payload_w = os.pipe()
        sink = LogSink(name, None)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            env = spare_env(base_env(python), status_w, payload_r)
            process, pumps, net_fds = self._launch(
                [python, *self._entrypoint, "--spare"], env, str(workdir), (), sink, (status_w, payload_r),
                name,
            )
        except (ContainerError, OSError) as exc:
            os.close(status_r)
            os.close(payload_w)
            log.warning("cannot start a spare container for %s (containers start fresh): %s", python, exc)
            self._no_spare.add(python)
            return
        finally:
            os.close(status_w)
            os.close(payload_r)
        network = None
        if net_fds is not None:
            network = asyncio.create_task(setup_network(net_fds[0], net_fds[1], workdir / "slirp4netns.log"))
        spare = Spare(python, self.sandboxed, process, sink, pumps, status_r, status_w, payload_w,
                      net_fds[1] if net_fds is not None else None, network)
        spare.watch(self._spare_exited)
        self._spares[python] = spare

    def _spare_exited(self, spare: Spare) -> None:
        if self._spares.get(spare.python) is spare:
            del self._spares[spare.python]
            self._no_spare.add(spare.python)
            log.warning("the spare container for %s exited unused (containers for it start fresh): %s",
                        spare.python, spare.sink.last_stderr_line() or "no output")
        spare.discard()

    async def _bring_up(
        self,
        container: _Container,
        status_r: int,
        network: Callable[[], Awaitable[Sandbox]] | None,
        send: Callable[[], Awaitable[None]] | None,
    ) -> None:
        status, transport = await open_pipe_reader(status_r, limit=_STATUS_LINE_LIMIT)
        try:
            if network is not None:
                container.sandbox = await network()
            if send is not None:
                await send()
            timeout = container.spec.function.startup_timeout or DEFAULT_STARTUP_TIMEOUT
            await self._wait_ready(container, status, timeout)
            if self._closed:
                raise ContainerError("the runtime shut down while the container was starting")
        finally:
            transport.close()

    async def _spawn(
        self,
        spec: ContainerSpec,
        spec_file: Path,
        sink: LogSink,
        secret_env: dict[str, str],
        status_w: int,
    ) -> tuple[_Container, tuple[int, int] | None]:
        """Launch the process; in the sandbox also return (info read end, block write end)."""
        process, pumps, net_fds = self._launch(
            [spec.python, *self._entrypoint, str(spec_file)], container_env(spec, secret_env, status_w),
            spec.workdir, spec.mounts, sink, (status_w,), spec.container_id,
        )
        return _Container(spec, process, sink, pumps), net_fds

    def _launch(
        self,
        command: list[str],
        env: dict[str, str],
        workdir: str,
        mounts: Sequence[Mount],
        sink: LogSink,
        pass_fds: tuple[int, ...],
        name: str,
    ) -> tuple[ChildProcess, list[asyncio.Task[None]], tuple[int, int] | None]:
        net_fds: tuple[int, int] | None = None
        child_fds: tuple[int, ...] = ()
        if self.sandboxed:
            info_r, info_w = os.pipe()
            block_r, block_w = os.pipe()
            net_fds, child_fds = (info_r, block_w), (info_w, block_r)
            command = bwrap_argv(
                command, workdir=workdir, mounts=mounts, resolv_conf=self._resolv_conf,
                info_fd=info_w, block_fd=block_r,
            )
            pass_fds += child_fds
        try:
            process = ChildProcess.spawn(command, env=env, cwd=workdir, pass_fds=pass_fds)
        except OSError as exc:
            for fd in net_fds or ():
                os.close(fd)
            raise ContainerError(f"cannot start container {name}: {exc}") from exc
        finally:
            for fd in child_fds:
                os.close(fd)
        pumps = [
            asyncio.create_task(pump(process.stdout, sink, "stdout")),
            asyncio.create_task(pump(process.stderr, sink, "stderr")),
        ]
        return process, pumps, net_fds

    async def _wait_ready(self, container: _Container, status: asyncio.StreamReader, limit_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        events = asyncio.create_task(self._read_status(container, status))
        exited = asyncio.create_task(container.process.wait())
        try:
            await asyncio.wait({events, exited}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
            if events.done():
                event = events.result()
                if event is not None and event.get("event") == "ready":
                    return
                if event is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(exited), _FAILED_EXIT_WAIT)
                    raise ContainerError(str(event.get("error") or "the container reported a failure"))
                # The status pipe closed without a verdict: the process is on its way out.
                await asyncio.wait({exited}, timeout=max(0.0, deadline - loop.time()))
            if not exited.done():
                raise StartupFailure(f"did not become ready within {limit_s:g} s (timed out); killed it")
            # A verdict written just before exiting may still sit in the pipe.
            if not events.done():
                await asyncio.wait({events}, timeout=1.0)
            event = events.result() if events.done() else None
            if event is not None and event.get("event") == "failed":
                raise ContainerError(str(event.get("error") or "the container reported a failure"))
            _, text = describe_exit(exited.result(), sandboxed=self.sandboxed)
            raise StartupFailure(f"{text} before it was ready")
        finally:
            events.cancel()
            exited.cancel()

    async def _read_status(
        self, container: _Container, status: asyncio.StreamReader
    ) -> dict[str, object] | None:
        """Collect phases; return the `ready`/`failed` event, or None when the pipe closes first."""
        while line := await status.readline():
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("container %s wrote a bad status line: %r", container.spec.container_id, line)
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("event")
            if kind == "phase":
                seconds = event.get("seconds")
                container.phases.append(
                    (str(event.get("name")), float(seconds) if isinstance(seconds, int | float) else 0.0)
                )
            elif kind in ("ready", "failed"):
                return event
        return None

    def _failure_text(self, container: _Container, failure: StartupFailure) -> str:
        tail = "\n".join(container.sink.stderr_tail) or "(no stderr output)"
        return f"container {container.spec.container_id}: {failure}; last stderr lines:\n{tail}"

    # -- exit ---------------------------------------------------------------------------------------

    async def _watch(self, container: _Container) -> None:
        await container.process.wait()
        await asyncio.shield(self._reap(container, notify=True))

    def _exit_info(self, container: _Container, returncode: int) -> ExitInfo:
        code, text = describe_exit(returncode, sandboxed=self.sandboxed)
        if code > 0 and (line := container.sink.last_stderr_line()) is not None:
            text = f"{text}: {line}"
        if container.killed_after_grace:
            text = f"stopped: {text} after the {container.stop_grace:g} s grace period"
        elif container.stop_grace is not None:
            text = f"stopped: {text}"
        return ExitInfo(container.spec.container_id, code, text)

    def _reap(self, container: _Container, *, notify: bool = False) -> asyncio.Task[None]:
        """Kill what is left of the container and release its resources (once).

        With `notify` (containers whose start succeeded) the exit callback runs before `stop` returns.
        """
        if container.reaper is None:
            container.reaper = asyncio.create_task(self._release(container, notify))
        return container.reaper

    async def _release(self, container: _Container, notify: bool) -> None:
        self._kill(container)
        returncode = await container.process.wait()
        # The main process is gone; anything it left behind goes too.
        self._kill(container)
        if container.sandbox is not None:
            await container.sandbox.close()
        _, pending = await asyncio.wait(container.pumps, timeout=_DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()
        container.sink.close()
        await asyncio.to_thread(Path(container.spec.socket_path).unlink, missing_ok=True)
        self._containers.pop(container.spec.container_id, None)
        try:
            if notify:
                info = self._exit_info(container, returncode)
                log.info("container %s %s", info.container_id, info.reason)
                if self._callback is not None:
                    self._callback(info)
        except Exception:
            log.exception("exit callback failed for container %s", container.spec.container_id)
        finally:
            container.finished.set()

    def _kill(self, container: _Container) -> None:
        if container.sandbox is not None:
            container.sandbox.kill_all()
        if self.sandboxed:
            # bwrap's --die-with-parent takes the namespace down with the outer bwrap.
            container.process.send_signal(signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(container.process.pid, signal.SIGKILL)

    # -- stop -------------------------------------------------------------------------------------------

    async def stop(self, container_id: str, grace: float) -> None:
        container = self._containers.get(container_id)
        if container is None:
            return
        if container.stop_grace is None and container.process.returncode is None:
            container.stop_grace = grace
            if self._terminate(container):
                try:
                    await asyncio.wait_for(container.process.wait(), grace)
                except TimeoutError:
                    container.killed_after_grace = True
            if container.process.returncode is None:
                self._kill(container)
        await container.finished.wait()

    def _terminate(self, container: _Container) -> bool:
        """SIGTERM the container's main process (not bwrap); False when there is none to signal."""
        if self.sandboxed:
            return container.sandbox is not None and container.sandbox.signal_main(signal.SIGTERM)
        return container.process.send_signal(signal.SIGTERM)

    async def close(self) -> None:
        self._closed = True
        spares = list(self._spares.values())
        self._spares.clear()
        await asyncio.gather(
            *(self.stop(cid, self._close_grace) for cid in list(self._containers)),
            *(spare.discard() for spare in spares),
        )


def _read_at_startup(name: str) -> bool:
    return name.startswith("LD_") or (
        name.startswith("PYTHON") and name not in ("PYTHONPATH", "PYTHONUNBUFFERED")
    )


def _prepare(spec: ContainerSpec) -> tuple[Path, TextIO]:
    workdir = Path(spec.workdir)
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    spec_file = workdir / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    Path(spec.socket_path).unlink(missing_ok=True)
    log_path = Path(spec.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return spec_file, log_path.open("a", encoding="utf-8")
