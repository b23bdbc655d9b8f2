"""The container entrypoint: load the user's function, build its web app, serve it on a Unix socket.

Sync user code (the import, sync `@enter` hooks, app factories) runs outside the event loop, so that it
may itself call `asyncio.run`; async hooks and the server run on one uvloop loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import math
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Generator
from time import perf_counter
from types import FrameType
from typing import Any

import uvicorn
import uvloop

from shipyard.container._forwarded import ForwardedForMiddleware, LifespanStateMiddleware
from shipyard.container._lifespan import Lifespan
from shipyard.container._processes import terminate_descendants
from shipyard.container._status import StatusReporter
from shipyard.container._types import ASGIApp
from shipyard.exceptions import ContainerError
from shipyard.spec import ContainerSpec, WebConfig, WebKind

# The hosted product accepts WebSocket messages up to 2 MiB; a little more covers framing.
_WS_MAX_SIZE = 2 * 1024 * 1024 + 4096
# Longer than the proxy's pool keeps idle connections, so that the proxy closes them first and never
# sends a request on a connection we are closing.
_KEEP_ALIVE_S = 75
_CHILD_GRACE_S = 5.0
_MAX_GRACEFUL_S = 30.0
_SHIPYARD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class _Stopped(BaseException):
    """SIGTERM arrived before the container was serving."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens, with our own signal handling.

    uvicorn re-raises a caught SIGTERM once it has shut down, which would end the process with a
    failure status after a graceful stop.
    """

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self._started_event = started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._started_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def main(argv: list[str] | None = None, started_at: float | None = None) -> int:
    """Runs one container; returns the process exit status."""
    t0 = perf_counter() if started_at is None else started_at
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m shipyard.container SPEC_JSON_PATH|--spare", file=sys.stderr)
        return 2
    status = StatusReporter.from_env()
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        if args[0] == "--spare":
            from shipyard.container import _spare

            _spare.preload()
            spec, t0 = _spare.receive()
        else:
            with open(args[0], "rb") as f:
                spec = ContainerSpec.model_validate_json(f.read())
    except (OSError, ValueError, KeyError, TypeError, _Stopped) as exc:
        message = f"cannot read the container spec {args[0]}: {exc!r}"
        print(f"shipyard: {message}", file=sys.stderr)
        status.failed(message)
        return 1
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return _Container(spec, status, runner, t0).run()


class _Container:
    def __init__(
        self, spec: ContainerSpec, status: StatusReporter, runner: asyncio.Runner, t0: float
    ) -> None:
        self.spec = spec
        self.status = status
        self.runner = runner
        self.t0 = t0
        self.grace = min(spec.function.timeout, _MAX_GRACEFUL_S)
        self.instance: Any = None
        self.sock: socket.socket | None = None
        self.server: _Server | None = None
        self.serve_task: asyncio.Task[None] | None = None
        self.main_task: asyncio.Task[Any] | None = None
        self.stop_requested = False
        self.is_ready = False
        self.lifespan: Lifespan | None = None
        self.closers: list[Callable[[], Awaitable[None]]] = []

    def run(self) -> int:
        code = 0
        try:
            self._start_and_serve()
        except BaseException as exc:
            if not self.is_ready:
                return self._fail(_failure_text(exc))
            print(f"shipyard: the server failed:\n{_describe(exc)}", file=sys.stderr)
            code = 1
        # Already stopping: a repeated SIGTERM must not cut the @exit hooks short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._run_exit_hooks()
        self._cleanup()
        return code

    def _start_and_serve(self) -> None:
        spec, fn = self.spec, self.spec.function
        self.sock = _bind_unix_socket(spec.socket_path)
        # Like the hosted product, the working directory holds the app file.
        os.chdir(spec.bundle_dir)
        from shipyard.sdk._loader import import_app_module

        module = import_app_module(spec.bundle_dir, spec.entry_file, spec.module_name)
        # Classes and functions of the app file travel by value, so that callers without the file can
        # unpickle the results and exceptions they appear in.
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
        obj = _resolve(module, fn.qualname, spec.entry_file)
        self.status.phase("imports", perf_counter() - self.t0)
        handler = self._handler(obj)
        t = perf_counter()
        factory_result: Any = None
        if fn.web is not None and fn.web.kind in (WebKind.ASGI_APP, WebKind.WSGI_APP):
            factory_result = self._call(handler)
        # One loop run from here to the end: uvloop drops signals that arrive between two runs.
        self.runner.run(self._serve(handler, factory_result, fn.web, t))

    def _handler(self, obj: Any) -> Callable[..., Any]:
        fn = self.spec.function
        if hasattr(obj, "user_cls"):
            t = perf_counter()
            user_cls = obj.user_cls
            self.instance = user_cls()
            for name in _hook_names(user_cls, "__shipyard_enter__"):
                self._call(getattr(self.instance, name))
            self.status.phase("enter", perf_counter() - t)
            if not fn.method_name:
                raise ContainerError(f"function {fn.tag!r} names class {fn.qualname!r} but no method")
            method: Callable[..., Any] = getattr(self.instance, fn.method_name)
            return method
        if hasattr(obj, "raw_f"):
            raw: Callable[..., Any] = obj.raw_f
            return raw
        raise ContainerError(
            f"{fn.qualname!r} in {self.spec.entry_file} is not a function or class of a shipyard App "
            f"(found {type(obj).__name__})"
        )

    def _call(self, hook: Callable[[], Any]) -> Any:
        result = hook()
        if inspect.isawaitable(result):
            result = self.runner.run(_await(result))
        return result

    async def _serve(self, handler: Callable[..., Any], factory_result: Any, web: WebConfig | None,
                     t: float) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        self.main_task = asyncio.current_task()
        try:
            app, websockets = await self._build(handler, factory_result, web)
            started = asyncio.Event()
            server = _Server(self._uvicorn_config(ForwardedForMiddleware(app), websockets), started)
            assert self.sock is not None
            self.serve_task = asyncio.create_task(server.serve(sockets=[self.sock]))
            waiting = asyncio.create_task(started.wait())
            await asyncio.wait({self.serve_task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not started.is_set():
                waiting.cancel()
                self.serve_task.result()
                raise ContainerError("the HTTP server stopped before it started listening")
        except asyncio.CancelledError:
            if self.stop_requested:
                raise _Stopped from None
            raise
        self.server = server
        self.status.phase("app_start", perf_counter() - t)
        self.status.ready()
        self.is_ready = True
        try:
            await self.serve_task
        finally:
            if self.lifespan is not None:
                await self.lifespan.shutdown(self.grace)
            for close in self.closers:
                await close()

    async def _build(self, handler: Callable[..., Any], factory_result: Any,
                     web: WebConfig | None) -> tuple[ASGIApp, bool]:
        """Returns the app to serve and whether it takes WebSockets."""
        if web is None:
            from shipyard.container._call_app import CallApp

            return CallApp(handler), False
        if web.kind == WebKind.FASTAPI_ENDPOINT:
            from shipyard.container._asgi import fastapi_endpoint_app

            return fastapi_endpoint_app(handler, web), False
        if web.kind == WebKind.ASGI_APP:
            self.lifespan = Lifespan(factory_result)
            await self.lifespan.startup()
            state = self.lifespan.state
            return (LifespanStateMiddleware(factory_result, state) if state else factory_result), True
        if web.kind == WebKind.WSGI_APP:
            from shipyard.container._asgi import wsgi_app

            return wsgi_app(factory_result), False
        from shipyard.container._web_server import ReverseProxy, wait_for_port

        if web.port is None:
            raise ContainerError(f"web_server function {self.spec.function.tag!r} has no port")
        call = _call_in_thread(handler)
        await wait_for_port(web.port, web.startup_timeout, self.spec.function.tag, call)
        proxy = ReverseProxy(web.port)
        self.closers.append(proxy.aclose)
        return proxy, True

    def _uvicorn_config(self, app: ASGIApp, websockets: bool) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            ws="websockets-sansio" if websockets else "none",
            ws_max_size=_WS_MAX_SIZE,
            lifespan="off",  # run by Lifespan, so that a failed startup is reported before "ready"
            interface="asgi3",
            proxy_headers=False,  # ForwardedForMiddleware trusts the proxy's header
            server_header=False,
            access_log=False,
            log_level="warning",
            timeout_keep_alive=_KEEP_ALIVE_S,
            timeout_graceful_shutdown=math.ceil(self.grace),
        )

    def _on_sigterm(self) -> None:
        if self.server is not None:
            if self.server.should_exit:
                self.server.force_exit = True
            self.server.should_exit = True
        else:
            self.stop_requested = True
            if self.main_task is not None:
                self.main_task.cancel()

    def _run_exit_hooks(self) -> None:
        if self.instance is None:
            return
        for name in _hook_names(type(self.instance), "__shipyard_exit__"):
            try:
                self._call(getattr(self.instance, name))
            except BaseException as exc:
                print(f"shipyard: @exit hook {name!r} failed:\n{_describe(exc)}", file=sys.stderr)

    def _fail(self, error: str) -> int:
        print(f"shipyard: container failed to start: {error}", file=sys.stderr)
        sys.stderr.flush()
        self.status.failed(error)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._cleanup()
        return 1

    def _cleanup(self) -> None:
        terminate_descendants(_CHILD_GRACE_S)
        if self.sock is not None:
            self.sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.spec.socket_path)


def _bind_unix_socket(path: str) -> socket.socket:
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A socket path is limited to ~107 bytes; a name relative to the working directory is not.
    os.chdir(directory)
    sock.bind(name)
    os.chmod(name, 0o600)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _resolve(module: Any, qualname: str, entry_file: str) -> Any:
    obj = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ContainerError(f"{entry_file} has no attribute {qualname!r}") from None
    return obj


def _hook_names(user_cls: type, marker: str) -> list[str]:
    """Names of the lifecycle hooks of a class, base classes first, each in definition order; a method
    overridden without the marker is no longer a hook."""
    names: dict[str, None] = {}
    for klass in reversed(user_cls.__mro__):
        for name, value in vars(klass).items():
            if getattr(value, marker, False) is True:
                names[name] = None
            else:
                names.pop(name, None)
    return list(names)


def _call_in_thread(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    """Calls a `web_server` function in a daemon thread: it may start its server and return, or serve
    in the foreground and never return."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            result = fn()
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name="shipyard-web-server", daemon=True).start()
    return future


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, _Stopped):
        return "the container was stopped (SIGTERM) before it was ready"
    if isinstance(exc, ContainerError):
        return str(exc)
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    """The exception line first (what a reader needs), then the traceback from the first frame of user
    code on (the entrypoint's and the import machinery's frames are noise to the user)."""
    report = traceback.TracebackException.from_exception(exc)
    frames = list(report.stack)
    first = next((i for i, frame in enumerate(frames) if not _is_internal(frame.filename)), 0)
    report.stack = traceback.StackSummary.from_list(frames[first:])
    line = "".join(report.format_exception_only()).strip()
    return f"{line}\n{''.join(report.format())}"


def _is_internal(filename: str) -> bool:
    return filename.startswith("<frozen ") or os.path.abspath(filename).startswith(_SHIPYARD_DIR)
