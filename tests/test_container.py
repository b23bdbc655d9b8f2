"""The container entrypoint as a real process: app files, status pipe, HTTP over its Unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import unix_connect
from websockets.typing import Subprotocol

from shipyard.spec import ContainerSpec, FunctionSpec, WebConfig, WebKind

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Container:
    process: subprocess.Popen[bytes]
    socket_path: str
    log_path: Path
    bundle: Path
    status_fd: int
    events: list[dict[str, Any]] = field(default_factory=list)
    _buffer: bytes = b""

    def wait_started(self, limit_s: float = 30.0) -> dict[str, Any]:
        """Reads status events until `ready` or `failed`; returns that last event."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                event: dict[str, Any] = json.loads(line)
                self.events.append(event)
                if event["event"] in ("ready", "failed"):
                    return event
            readable, _, _ = select.select([self.status_fd], [], [], 0.2)
            if readable:
                chunk = os.read(self.status_fd, 65536)
                if not chunk:
                    break
                self._buffer += chunk
        raise AssertionError(f"no ready/failed event; events={self.events}\nlog:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=self.socket_path)
        return httpx.AsyncClient(transport=transport, base_url="http://container", timeout=20, **kwargs)

    def stop(self, limit_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(limit_s)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.status_fd)


class Launcher:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        # Unix socket paths are limited to ~107 bytes: keep them out of pytest's long tmp paths.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="syc", dir="/tmp"))
        self.containers: list[Container] = []

    def start(
        self,
        source: str,
        qualname: str,
        web: WebConfig | None,
        *,
        method_name: str | None = None,
        timeout: float = 300.0,
        files: dict[str, str] | None = None,
    ) -> Container:
        index = len(self.containers)
        bundle = self.tmp_path / f"bundle{index}"
        bundle.mkdir()
        (bundle / "app.py").write_text(textwrap.dedent(source))
        for name, text in (files or {}).items():
            (bundle / name).write_text(textwrap.dedent(text))
        tag = f"{qualname}.{method_name}" if method_name else qualname
        spec = ContainerSpec(
            container_id=f"ctr-{index}",
            app_id="ap-test",
            app_name="test",
            version=1,
            function_id=f"fn-{index}",
            function=FunctionSpec(
                tag=tag,
                qualname=qualname,
                cls_name=qualname if method_name else None,
                method_name=method_name,
                web=web,
                timeout=timeout,
            ),
            module_name="app",
            entry_file="app.py",
            bundle_dir=str(bundle),
            python=sys.executable,
            workdir=str(bundle),
            socket_path=str(self.socket_dir / f"c{index}.sock"),
            log_path=str(self.tmp_path / f"c{index}.log"),
        )
        spec_path = self.tmp_path / f"spec{index}.json"
        spec_path.write_text(spec.model_dump_json())
        read_fd, write_fd = os.pipe()
        with open(spec.log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "shipyard.container", str(spec_path)],
                env={**os.environ, "SHIPYARD_STATUS_FD": str(write_fd)},
                pass_fds=(write_fd,),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        os.close(write_fd)
        container = Container(process, spec.socket_path, Path(spec.log_path), bundle, read_fd)
        self.containers.append(container)
        return container

    def close(self) -> None:
        for container in self.containers:
            container.close()
        for leftover in self.socket_dir.iterdir():
            leftover.unlink()
        self.socket_dir.rmdir()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


def ready(container: Container) -> Container:
    event = container.wait_started()
    assert event == {"event": "ready"}, f"{event}\nlog:\n{container.log()}"
    return container


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


FASTAPI_APP = """
    from __future__ import annotations

    import asyncio

    from fastapi import Request
    from fastapi.responses import HTMLResponse, StreamingResponse
    from pydantic import BaseModel

    from shipyard import App, enter, fastapi_endpoint

    app = App("web")


    class Item(BaseModel):
        name: str
        qty: int = 1


    @app.function()
    @fastapi_endpoint(docs=True)
    def hello(request: Request, name: str = "world", times: int = 1) -> dict:
        return {"text": f"hello {name}" * times, "client": request.client.host if request.client else None}


    @app.function()
    @fastapi_endpoint(method="POST")
    def echo(body: dict) -> dict:
        return {"got": body}


    @app.cls()
    class Store:
        @enter()
        def load(self) -> None:
            self.prefix = "item:"

        @fastapi_endpoint(method="POST")
        async def create(self, item: Item) -> dict:
            return {"key": self.prefix + item.name, "qty": item.qty}


    @app.function()
    @fastapi_endpoint()
    def page() -> HTMLResponse:
        return HTMLResponse("<h1>hi</h1>")


    @app.function()
    @fastapi_endpoint()
    async def stream() -> StreamingResponse:
        async def chunks():
            for i in range(3):
                yield f"part{i}\\n"
                await asyncio.sleep(0.05)
        return StreamingResponse(chunks(), media_type="text/plain")


    @app.function()
    @fastapi_endpoint()
    async def slow() -> str:
        await asyncio.sleep(1.5)
        return "done"
"""


async def test_fastapi_endpoints(launcher: Launcher) -> None:
    get = WebConfig(kind=WebKind.FASTAPI_ENDPOINT, docs=True)
    post = WebConfig(kind=WebKind.FASTAPI_ENDPOINT, method="POST")
    plain = WebConfig(kind=WebKind.FASTAPI_ENDPOINT)
    hello = launcher.start(FASTAPI_APP, "hello", get)
    echo = launcher.start(FASTAPI_APP, "echo", post)
    store = launcher.start(FASTAPI_APP, "Store", post, method_name="create")
    page = launcher.start(FASTAPI_APP, "page", plain)
    stream = launcher.start(FASTAPI_APP, "stream", plain)

    async with ready(hello).client() as client:
        response = await client.get("/", params={"name": "bob", "times": "2"})
        assert response.json() == {"text": "hello bobhello bob", "client": None}
        assert (await client.get("/", params={"times": "x"})).status_code == 422
        forwarded = await client.get("/", headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1"})
        assert forwarded.json()["client"] == "203.0.113.7"
        assert (await client.get("/docs")).status_code == 200
        assert (await client.post("/")).status_code == 405
    names = [e["name"] for e in hello.events if e["event"] == "phase"]
    assert names == ["imports", "app_start"]

    async with ready(echo).client() as client:
        response = await client.post("/", json={"a": [1, 2], "b": "x"})
        assert response.json() == {"got": {"a": [1, 2], "b": "x"}}
        assert (await client.get("/docs")).status_code == 404

    async with ready(store).client() as client:
        response = await client.post("/", json={"name": "pen", "qty": 3})
        assert response.json() == {"key": "item:pen", "qty": 3}
        invalid = await client.post("/", json={"qty": "many"})
        assert invalid.status_code == 422
        assert {tuple(e["loc"]) for e in invalid.json()["detail"]} == {("body", "name"), ("body", "qty")}
    assert "enter" in [e["name"] for e in store.events if e["event"] == "phase"]

    async with ready(page).client() as client:
        response = await client.get("/")
        assert response.text == "<h1>hi</h1>"
        assert response.headers["content-type"].startswith("text/html")

    async with ready(stream).client() as client, client.stream("GET", "/") as response:
        parts = [chunk async for chunk in response.aiter_text()]
        assert "".join(parts) == "part0\npart1\npart2\n"

    for container in launcher.containers:
        assert container.stop() == 0, container.log()


async def test_sigterm_drains_in_flight_request(launcher: Launcher) -> None:
    container = ready(
        launcher.start(FASTAPI_APP, "slow", WebConfig(kind=WebKind.FASTAPI_ENDPOINT), timeout=10)
    )
    async with container.client() as client:
        request = asyncio.create_task(client.get("/"))
        await asyncio.sleep(0.5)
        container.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            async with container.client() as late:
                await late.get("/")
        response = await request
        assert response.status_code == 200
        assert response.json() == "done"
    assert await asyncio.to_thread(container.process.wait, 10) == 0, container.log()
    assert not await asyncio.to_thread(Path(container.socket_path).exists)


ASGI_APP = """
    import os
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request, WebSocket

    from shipyard import App, asgi_app, enter, exit

    app = App("asgi")


    @app.cls()
    class Service:
        @enter()
        async def start(self) -> None:
            self.greeting = "hi"

        @exit()
        def stop(self) -> None:
            with open("events.txt", "a") as f:
                f.write("exit\\n")

        @asgi_app()
        def web(self) -> FastAPI:
            @asynccontextmanager
            async def lifespan(api: FastAPI):
                yield {"started": os.getpid()}
                with open("events.txt", "a") as f:
                    f.write("lifespan shutdown\\n")

            api = FastAPI(lifespan=lifespan)

            @api.get("/info")
            def info(request: Request) -> dict:
                return {
                    "greeting": self.greeting,
                    "started": request.state.started,
                    "client": request.client.host,
                }

            @api.websocket("/ws")
            async def ws(websocket: WebSocket) -> None:
                await websocket.accept()
                async for text in websocket.iter_text():
                    await websocket.send_text(f"echo: {text}")

            return api
"""


async def test_asgi_app_with_lifespan_enter_exit_and_websocket(launcher: Launcher) -> None:
    container = ready(
        launcher.start(ASGI_APP, "Service", WebConfig(kind=WebKind.ASGI_APP), method_name="web")
    )
    async with container.client() as client:
        response = await client.get("/info", headers={"x-forwarded-for": "198.51.100.4"})
        expected = {"greeting": "hi", "started": container.process.pid, "client": "198.51.100.4"}
        assert response.json() == expected
    async with unix_connect(container.socket_path, "ws://container/ws") as ws:
        await ws.send("ping")
        assert await ws.recv() == "echo: ping"
    assert container.stop() == 0, container.log()
    assert (container.bundle / "events.txt").read_text() == "lifespan shutdown\nexit\n"


WSGI_APP = """
    from flask import Flask, request

    from shipyard import App, wsgi_app

    app = App("wsgi")


    @app.function()
    @wsgi_app()
    def flask_app():
        web = Flask(__name__)

        @web.get("/")
        def index():
            return {"client": request.remote_addr, "q": request.args.get("q")}

        @web.post("/upper")
        def upper():
            return request.get_data().upper()

        return web
"""


async def test_wsgi_app(launcher: Launcher) -> None:
    container = ready(launcher.start(WSGI_APP, "flask_app", WebConfig(kind=WebKind.WSGI_APP)))
    async with container.client() as client:
        response = await client.get("/", params={"q": "x"}, headers={"X-Forwarded-For": "192.0.2.9"})
        assert response.json() == {"client": "192.0.2.9", "q": "x"}
        assert (await client.post("/upper", content=b"abc" * 1000)).content == b"ABC" * 1000
        assert (await client.get("/missing")).status_code == 404
    assert container.stop() == 0, container.log()


async def test_sigterm_right_after_ready_exits_cleanly(launcher: Launcher) -> None:
    container = ready(launcher.start(WSGI_APP, "flask_app", WebConfig(kind=WebKind.WSGI_APP)))
    assert container.stop(10) == 0, container.log()


HTTP_SERVER_APP = """
    import subprocess
    import sys

    from shipyard import App, web_server

    app = App("files")
    PORT = {port}


    @app.function()
    @web_server(PORT, startup_timeout={startup_timeout})
    def files():
        {body}
"""


async def test_web_server_http_server(launcher: Launcher) -> None:
    port = free_port()
    body = (
        'server = subprocess.Popen([sys.executable, "-m", "http.server", str(PORT), "--bind", "0.0.0.0"])\n'
        '        open("server.pid", "w").write(str(server.pid))'
    )
    source = HTTP_SERVER_APP.format(port=port, startup_timeout=10, body=body)
    web = WebConfig(kind=WebKind.WEB_SERVER, port=port, startup_timeout=10)
    container = ready(launcher.start(source, "files", web, files={"hello.txt": "hello file\n"}))
    async with container.client() as client:
        response = await client.get("/hello.txt")
        assert response.status_code == 200
        assert response.text == "hello file\n"
        assert (await client.get("/nope.txt")).status_code == 404
    server_pid = int((container.bundle / "server.pid").read_text())
    assert pid_alive(server_pid)
    assert container.stop() == 0, container.log()
    assert not pid_alive(server_pid)


async def test_web_server_that_never_listens_fails_clearly(launcher: Launcher) -> None:
    port = free_port()
    source = HTTP_SERVER_APP.format(port=port, startup_timeout=1.0, body="pass")
    web = WebConfig(kind=WebKind.WEB_SERVER, port=port, startup_timeout=1.0)
    container = launcher.start(source, "files", web)
    event = container.wait_started()
    assert event["event"] == "failed"
    assert f"did not start listening on 0.0.0.0:{port} within 1.0 s" in event["error"]
    assert "binds 0.0.0.0" in event["error"]
    assert container.process.wait(10) == 1
    assert f"0.0.0.0:{port}" in container.log()


UPSTREAM_SERVER = """
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute


    async def headers(request):
        return JSONResponse({"xff": request.headers.get("x-forwarded-for"), "host": request.headers["host"],
                             "path": request.url.path, "query": request.url.query})


    async def upload(request):
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse({"size": size})


    async def ticks(request):
        async def gen():
            for i in range(3):
                yield f"data: {i}\\n\\n"
                await asyncio.sleep(0.05)
        return StreamingResponse(gen(), media_type="text/event-stream")


    async def forever(request):
        async def gen():
            try:
                while True:
                    yield "data: tick\\n\\n"
                    await asyncio.sleep(0.02)
            finally:
                open("stream-closed.txt", "w").write("closed")
        return StreamingResponse(gen(), media_type="text/event-stream")


    async def echo(websocket):
        await websocket.accept(subprotocol="chat")
        async for message in websocket.iter_bytes():
            await websocket.send_bytes(message[::-1])


    app = Starlette(routes=[Route("/headers", headers), Route("/upload", upload, methods=["POST"]),
                            Route("/ticks", ticks), Route("/forever", forever), WebSocketRoute("/ws", echo)])
"""


async def test_web_server_streams_and_proxies_websockets(launcher: Launcher) -> None:
    port = free_port()
    body = (
        'subprocess.Popen([sys.executable, "-m", "uvicorn", "upstream:app", "--host", "0.0.0.0",\n'
        '                          "--port", str(PORT), "--log-level", "warning"])'
    )
    source = HTTP_SERVER_APP.format(port=port, startup_timeout=15, body=body)
    web = WebConfig(kind=WebKind.WEB_SERVER, port=port, startup_timeout=15)
    container = ready(launcher.start(source, "files", web, files={"upstream.py": UPSTREAM_SERVER}))
    async with container.client() as client:
        response = await client.get(
            "/headers?a=1&b=%20x", headers={"x-forwarded-for": "203.0.113.1", "host": "me.example"}
        )
        assert response.json() == {"xff": "203.0.113.1", "host": "me.example", "path": "/headers",
                                   "query": "a=1&b=%20x"}

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"x" * 50_000

        assert (await client.post("/upload", content=upload())).json() == {"size": 1_000_000}
        async with client.stream("GET", "/ticks") as ticks:
            assert ticks.headers["content-type"].startswith("text/event-stream")
            events = [line async for line in ticks.aiter_lines() if line]
        assert events == ["data: 0", "data: 1", "data: 2"]
        # A client that leaves an endless stream ends the upstream request too.
        async with client.stream("GET", "/forever") as endless:
            async for line in endless.aiter_lines():
                if line:
                    break
        closed = container.bundle / "stream-closed.txt"
        for _ in range(100):
            if await asyncio.to_thread(closed.exists):
                break
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(closed.exists)
    chat = [Subprotocol("chat")]
    async with unix_connect(container.socket_path, "ws://container/ws", subprotocols=chat) as ws:
        assert ws.subprotocol == "chat"
        await ws.send(b"abc")
        assert await ws.recv() == b"cba"
    assert container.stop() == 0, container.log()
    assert "Traceback" not in container.log()


async def test_failure_at_import_reports_traceback(launcher: Launcher) -> None:
    source = """
        from shipyard import App, fastapi_endpoint

        app = App("broken")
        raise RuntimeError("cannot import this app")
    """
    container = launcher.start(source, "f", WebConfig(kind=WebKind.FASTAPI_ENDPOINT))
    event = container.wait_started()
    assert event["event"] == "failed"
    assert event["error"].startswith("RuntimeError: cannot import this app")
    assert "Traceback (most recent call last)" in event["error"]
    assert "app.py" in event["error"]
    assert "_entrypoint.py" not in event["error"]
    assert container.process.wait(10) == 1
    assert "cannot import this app" in container.log()


async def test_failure_in_enter_reports_traceback(launcher: Launcher) -> None:
    source = """
        from shipyard import App, asgi_app, enter

        app = App("broken")


        @app.cls()
        class Model:
            @enter()
            def load(self):
                raise ValueError("weights missing")

            @asgi_app()
            def web(self):
                raise AssertionError("never reached")
    """
    container = launcher.start(source, "Model", WebConfig(kind=WebKind.ASGI_APP), method_name="web")
    event = container.wait_started()
    assert event["event"] == "failed"
    assert event["error"].startswith("ValueError: weights missing")
    assert "in load" in event["error"]
    assert container.process.wait(10) == 1


async def test_failed_lifespan_startup_reports_the_app_traceback(launcher: Launcher) -> None:
    source = """
        from contextlib import asynccontextmanager

        from fastapi import FastAPI

        from shipyard import App, asgi_app

        app = App("broken")


        @asynccontextmanager
        async def lifespan(api):
            raise RuntimeError("database unreachable")
            yield


        @app.function()
        @asgi_app()
        def web():
            return FastAPI(lifespan=lifespan)
    """
    container = launcher.start(source, "web", WebConfig(kind=WebKind.ASGI_APP))
    event = container.wait_started()
    assert event["event"] == "failed"
    assert "lifespan startup failed" in event["error"]
    assert "RuntimeError: database unreachable" in event["error"]
    assert container.process.wait(10) == 1


async def test_plain_function_serves_calls(launcher: Launcher) -> None:
    source = """
        from shipyard import App

        app = App("plain")


        @app.function()
        def f(x, y=1):
            if x < 0:
                raise ValueError("negative")
            return x + y
    """
    import cloudpickle

    from shipyard._wire import CALL_PATH, OUTCOME_HEADER, exception_from

    container = launcher.start(source, "f", None)
    async with ready(container).client() as client:
        ok = await client.post(CALL_PATH, content=cloudpickle.dumps(((2,), {"y": 3})))
        assert ok.headers[OUTCOME_HEADER] == "ok" and cloudpickle.loads(ok.content) == 5
        failed = await client.post(CALL_PATH, content=cloudpickle.dumps(((-1,), {})))
        assert failed.headers[OUTCOME_HEADER] == "error"
        error = exception_from(failed.content, "f")
        assert isinstance(error, ValueError) and "negative" in str(error)
        assert 'raise ValueError("negative")' in "\n".join(error.__notes__)
        assert (await client.get("/")).status_code == 404
    assert container.stop() == 0
