"""CLI: usage errors, pure helpers, and the HTTP client against a small real API server on loopback.

The end-to-end tests (real server, real loader, real containers) live elsewhere; here the server is a tiny
FastAPI app implementing a few routes of the API contract.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from shipyard import spec
from shipyard.cli import _deploy, _serve, main
from shipyard.cli._client import ApiClient, discover_url, read_admin_token
from shipyard.cli._deploy import function_lines
from shipyard.cli._secret import parse_pairs, read_dotenv
from shipyard.exceptions import AuthError, ExecutionError, InvalidError, NotFoundError

TOKEN = "test-admin-token"


@dataclass
class FakeApi:
    url: str
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    deploys: list[dict[str, Any]] = field(default_factory=list)
    deploy_times: list[float] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    heartbeats: list[str] = field(default_factory=list)


def _build_app(state: FakeApi) -> FastAPI:
    api = FastAPI()

    @api.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        if request.url.path != "/api/health" and request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"detail": "Missing or wrong admin token"}, status_code=401)
        return await call_next(request)

    @api.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "workspace": "shipyard", "version": "test"}

    @api.get("/api/apps")
    async def list_apps(env: str = "main") -> list[dict[str, Any]]:
        fn = spec.DeployedFunction(tag="web", label="demo-web", url="http://shipyard--demo-web.localhost:1",
                                   requires_proxy_auth=True)
        info = spec.AppInfo(app_id="ap-1", name="demo", environment=env, state="deployed", version=3,
                            created_at=time.time(), functions=[fn], containers=1)
        return [info.model_dump(mode="json")]

    @api.post("/api/apps/{name}/stop")
    async def stop(name: str) -> JSONResponse:
        return JSONResponse({"detail": f"No app named {name!r} in environment 'main'"}, status_code=404)

    @api.post("/api/apps/deploy")
    async def deploy(request: Request) -> StreamingResponse:
        body = await request.json()
        state.deploys.append(body)
        state.deploy_times.append(time.monotonic())
        name = body["app"]["name"]

        async def events() -> AsyncIterator[bytes]:
            progress = {"event": "progress", "message": "Building image abc: pip install x"}
            yield json.dumps(progress).encode() + b"\n"
            if name == "broken":
                yield json.dumps({"event": "error", "status": 400, "message": "bad app"}).encode() + b"\n"
                return
            result = spec.DeployResponse(app_id="ap-1", name=name, version=len(state.deploys), functions=[
                spec.DeployedFunction(tag="f", label=f"{name}-f", url=f"http://shipyard--{name}-f.localhost:1")])
            yield json.dumps({"event": "result", "data": result.model_dump(mode="json")}).encode() + b"\n"

        return StreamingResponse(events(), media_type="application/x-ndjson")

    @api.delete("/api/apps/by-id/{app_id}")
    async def delete_app(app_id: str) -> dict[str, bool]:
        state.deleted.append(app_id)
        return {"ok": True}

    @api.post("/api/apps/by-id/{app_id}/heartbeat")
    async def heartbeat(app_id: str) -> dict[str, bool]:
        state.heartbeats.append(app_id)
        return {"ok": True}

    @api.post("/api/secrets")
    async def create_secret(request: Request) -> JSONResponse:
        body = await request.json()
        if body["name"] in state.secrets and not body["force"]:
            return JSONResponse({"detail": f"Secret {body['name']!r} already exists"}, status_code=409)
        state.secrets[body["name"]] = body["values"]
        info = spec.SecretInfo(name=body["name"], environment=body["env"], keys=sorted(body["values"]),
                               created_at=time.time())
        return JSONResponse(info.model_dump(mode="json"))

    @api.get("/api/secrets")
    async def list_secrets(env: str = "main") -> list[dict[str, Any]]:
        infos = [spec.SecretInfo(name=n, environment=env, keys=sorted(v), created_at=0.0)
                 for n, v in state.secrets.items()]
        return [info.model_dump(mode="json") for info in infos]

    @api.post("/api/proxy-tokens")
    async def create_token(env: str = "main") -> dict[str, Any]:
        created = spec.ProxyTokenCreated(token_id="wk-abc", token_secret="ws-secret", environment=env)
        return created.model_dump()

    return api


@pytest.fixture
def fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    state = FakeApi(url=url)
    server = uvicorn.Server(uvicorn.Config(_build_app(state), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake API did not start"
        time.sleep(0.02)
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_SERVER_URL", url)
    monkeypatch.setenv("SHIPYARD_TOKEN", TOKEN)
    yield state
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- usage errors ----------------------------------------------------------------------------------


def test_help_lists_the_command_groups() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("server", "serve", "deploy", "app", "secret", "workspace"):
        assert command in result.output


@pytest.mark.parametrize("args", [
    ["deploy", "--bogus", "x.py"],
    ["deploy", "/nonexistent/app.py"],
    ["serve", "/nonexistent/app.py"],
    ["serve", "--timeout", "-1", "x.py"],
    ["secret", "create", "db", "NOEQUALS"],
    ["secret", "create", "db", "1BAD=x"],
    ["secret", "create", "db"],
    ["app", "stop"],
    ["server", "--port", "0"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_bad_pair_message_names_the_argument() -> None:
    result = CliRunner().invoke(main, ["secret", "create", "db", "A=1", "oops"])
    assert result.exit_code == 2
    assert "'oops' is not KEY=VALUE" in result.stderr


# -- pure helpers ----------------------------------------------------------------------------------


def test_parse_pairs_keeps_equals_signs_in_values() -> None:
    assert parse_pairs(["URL=postgres://u:p@h/db?a=b", "EMPTY="]) == {
        "URL": "postgres://u:p@h/db?a=b", "EMPTY": ""}


def test_read_dotenv(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# comment\nA=1\nB='two words'\nexport C=x=y\n")
    assert read_dotenv(path) == {"A": "1", "B": "two words", "C": "x=y"}


def test_function_lines_mark_proxy_auth() -> None:
    response = spec.DeployResponse(app_id="ap-1", name="a", version=1, functions=[
        spec.DeployedFunction(tag="f", label="a-f", url="http://x--a-f.localhost:8787",
                              requires_proxy_auth=True),
        spec.DeployedFunction(tag="Cls.web", label="a-cls-web", url="http://x--a-cls-web.localhost:8787"),
        spec.DeployedFunction(tag="g", label=None, url=None),
    ])
    assert function_lines(response) == [
        "Created web function f => http://x--a-f.localhost:8787 🔑",
        "Created web function Cls.web => http://x--a-cls-web.localhost:8787",
        "Created function g",
    ]


def test_discover_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_SERVER_URL", raising=False)
    assert discover_url(tmp_path) == "http://127.0.0.1:8787"
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9999/", "pid": 1}))
    assert discover_url(tmp_path) == "http://127.0.0.1:9999"
    monkeypatch.setenv("SHIPYARD_SERVER_URL", "http://example.test:1")
    assert discover_url(tmp_path) == "http://example.test:1"


def test_read_admin_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_TOKEN", raising=False)
    with pytest.raises(AuthError, match="shipyard server"):
        read_admin_token(tmp_path)
    (tmp_path / "admin_token").write_text("from-file\n")
    assert read_admin_token(tmp_path) == "from-file"
    monkeypatch.setenv("SHIPYARD_TOKEN", "from-env")
    assert read_admin_token(tmp_path) == "from-env"


# -- against a real HTTP server --------------------------------------------------------------------


def test_unreachable_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {"SHIPYARD_SERVER_URL": url, "SHIPYARD_TOKEN": "t"}
    result = CliRunner().invoke(main, ["app", "list"], env=env)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: Cannot reach the Shipyard server at {url}; start it with `shipyard server`")


def test_wrong_token_shows_the_api_detail(fake_api: FakeApi) -> None:
    result = CliRunner().invoke(main, ["secret", "list"], env={"SHIPYARD_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: Missing or wrong admin token"


def test_not_found_detail(fake_api: FakeApi) -> None:
    result = CliRunner().invoke(main, ["app", "stop", "ghost"])
    assert result.exit_code == 1
    assert "Error: No app named 'ghost' in environment 'main'" in result.stderr
    assert "Traceback" not in result.output


def test_app_list_json_and_table(fake_api: FakeApi) -> None:
    result = CliRunner().invoke(main, ["app", "list", "--json", "--env", "dev"])
    assert result.exit_code == 0, result.output
    apps = json.loads(result.stdout)
    assert [(a["name"], a["environment"], a["version"]) for a in apps] == [("demo", "dev", 3)]
    table = CliRunner().invoke(main, ["app", "list"])
    assert table.exit_code == 0
    assert "ap-1" in table.stdout and "demo" in table.stdout


def test_secret_create_never_prints_values(fake_api: FakeApi, tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("FROM_FILE=file-value\nA=overridden\n")
    args = ["secret", "create", "db", "A=s3cr=t", "B=hunter2", "--from-dotenv", str(dotenv)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert fake_api.secrets["db"] == {"A": "s3cr=t", "B": "hunter2", "FROM_FILE": "file-value"}
    for value in ("s3cr=t", "hunter2", "file-value"):
        assert value not in result.output
    again = CliRunner().invoke(main, ["secret", "create", "db", "A=1"])
    assert again.exit_code == 1
    assert "Error: Secret 'db' already exists" in again.stderr
    assert CliRunner().invoke(main, ["secret", "create", "db", "A=1", "--force"]).exit_code == 0
    listed = json.loads(CliRunner().invoke(main, ["secret", "list", "--json"]).stdout)
    assert listed[0]["name"] == "db" and listed[0]["keys"] == ["A"]


def test_proxy_token_create_prints_two_header_lines(fake_api: FakeApi) -> None:
    result = CliRunner().invoke(main, ["workspace", "proxy-tokens", "create"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Modal-Key: wk-abc\nModal-Secret: ws-secret\n"
    assert "once" in result.stderr


def _request(name: str) -> spec.DeployRequest:
    app = spec.AppSpec(name=name, entry_file="app.py", module_name="app", functions=[])
    return spec.DeployRequest(app=app, bundle="", ephemeral=True)


def test_deploy_stream_progress_result_and_error(fake_api: FakeApi) -> None:
    progress: list[str] = []
    with ApiClient(fake_api.url, TOKEN) as client:
        response = client.deploy(_request("demo"), on_progress=progress.append)
        assert response.functions[0].url == "http://shipyard--demo-f.localhost:1"
        assert progress == ["Building image abc: pip install x"]
        with pytest.raises(InvalidError, match="bad app"):
            client.deploy(_request("broken"))
        with pytest.raises(NotFoundError):
            client.delete_secret("nope", "main")  # no such route in the fake: FastAPI's own 404


def _fake_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_load(file: Path, *, name: str | None, env: str, ephemeral: bool) -> spec.DeployRequest:
        # Stands in for the SDK loader subprocess (covered by the end-to-end tests).
        if "syntax error" in file.read_text():
            raise ExecutionError("SyntaxError: invalid syntax (app.py, line 1)")
        assert ephemeral
        return _request(name or "served")

    monkeypatch.setattr(_deploy, "load_request", fake_load)
    monkeypatch.setattr(_serve, "load_request", fake_load)
    monkeypatch.setattr(_serve, "HEARTBEAT_INTERVAL_S", 0.2)


def test_serve_reloads_on_save_and_stops_on_timeout(
        fake_api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_loader(monkeypatch)
    app_file = tmp_path / "app.py"
    app_file.write_text("x = 1\n")
    saved_at: list[float] = []

    def edit() -> None:
        time.sleep(0.8)
        app_file.write_text("x = 2\n")
        saved_at.append(time.monotonic())
        (tmp_path / "notes.txt").write_text("not a source file\n")
        time.sleep(1.2)
        app_file.write_text("syntax error\n")

    editor = threading.Thread(target=edit)
    editor.start()
    started = time.monotonic()
    result = CliRunner().invoke(main, ["serve", str(app_file), "--timeout", "3.5"])
    editor.join()
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 8
    lines = result.stdout.splitlines()
    url_line = "Created web function f => http://shipyard--served-f.localhost:1"
    assert lines[0] == url_line
    assert "Reloaded served (version 2)" in lines
    assert lines.count(url_line) == 2
    assert lines[-1] == "Stopped app served"
    assert "SyntaxError" in result.stderr and "Keeping the previous version" in result.stderr
    assert len(fake_api.deploys) == 2
    assert fake_api.deploy_times[1] - saved_at[0] < 2.0
    assert fake_api.deleted == ["ap-1"]
    assert fake_api.heartbeats and set(fake_api.heartbeats) == {"ap-1"}


def test_serve_stops_on_sigterm(fake_api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_loader(monkeypatch)
    app_file = tmp_path / "app.py"
    app_file.write_text("x = 1\n")

    def terminate() -> None:
        # The first heartbeat comes after serve installed its SIGTERM handler.
        deadline = time.monotonic() + 10
        while not fake_api.heartbeats and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate)
    killer.start()
    result = CliRunner().invoke(main, ["serve", str(app_file), "--name", "sig"])
    killer.join()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "Stopped app sig"
    assert fake_api.deleted == ["ap-1"]
    assert fake_api.deploys[0]["app"]["name"] == "sig"
