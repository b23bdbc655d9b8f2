"""Every code block of the web-endpoints page, deployed to a real server and called over HTTP.

Each example runs twice: as written (`from shipyard import ...`) and rewritten to `from modal import ...`.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from .conftest import Platform, copy_example

VARIANTS = ["shipyard", "modal"]


def deploy_example(platform: Platform, tmp_path: Path, name: str, variant: str) -> dict[str, str]:
    path = copy_example(name, tmp_path / variant, as_modal=variant == "modal")
    app_name = f"{Path(name).stem.replace('_', '-')}-{variant}"
    return platform.deploy(path, "--name", app_name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hello_world(runtime_platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(runtime_platform, tmp_path, "hello.py", variant)
    assert urls["f"].startswith(f"http://shipyard--hello-{variant}-f.localhost:")
    with runtime_platform.client(urls["f"]) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.json() == "Hello world!"


@pytest.mark.parametrize("variant", VARIANTS)
def test_query_parameter(platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(platform, tmp_path, "square_get.py", variant)
    with platform.client(urls["square"]) as client:
        assert client.get("/", params={"x": 42}).json() == {"square": 1764}
        bad = client.get("/", params={"x": "forty-two"})
    assert bad.status_code == 422


@pytest.mark.parametrize("variant", VARIANTS)
def test_post_dict(platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(platform, tmp_path, "square_post.py", variant)
    with platform.client(urls["square"]) as client:
        assert client.post("/", json={"x": 42}).json() == {"square": 1764}
        assert client.get("/").status_code == 405


@pytest.mark.parametrize("variant", VARIANTS)
def test_pydantic_model_with_html_response(platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(platform, tmp_path, "web_demo.py", variant)
    with platform.client(urls["f"], timeout=60) as client:
        response = client.post("/", json={"name": "Erik", "qty": 10})
        invalid = client.post("/", json={"qty": "many"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html>Hello, Erik!</html>"
    assert invalid.status_code == 422


@pytest.mark.parametrize("variant", VARIANTS)
def test_fastapi_asgi_app(platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(platform, tmp_path, "fastapi_app.py", variant)
    with platform.client(urls["fastapi_app"]) as client:
        assert client.post("/foo", json={"hello": "world"}).json() == {"hello": "world"}
        assert client.get("/bar", params={"arg": "Shipyard"}).text == "<h1>Hello Fast Shipyard!</h1>"
        assert client.get("/bar").text == "<h1>Hello Fast world!</h1>"
        assert client.get("/missing").status_code == 404


@pytest.mark.parametrize("variant", VARIANTS)
def test_flask_wsgi_app(platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(platform, tmp_path, "flask_app.py", variant)
    with platform.client(urls["flask_app"]) as client:
        assert client.get("/").text == "Hello Flask World!"
        assert client.post("/echo", json={"a": [1, 2]}).json() == {"a": [1, 2]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_web_server_file_server(platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(platform, tmp_path, "file_server.py", variant)
    with platform.client(urls["my_file_server"]) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert "Directory listing for /" in response.text
    assert "etc/" in response.text


@pytest.mark.parametrize("variant", VARIANTS)
def test_bearer_token_auth_with_secret(platform: Platform, tmp_path: Path, variant: str) -> None:
    platform.cli("secret", "create", "my-web-auth-token", "AUTH_TOKEN=secret-random-token", "--force")
    urls = deploy_example(platform, tmp_path, "auth_example.py", variant)
    with platform.client(urls["f"]) as client:
        missing = client.get("/")
        wrong = client.get("/", headers={"Authorization": "Bearer nope"})
        right = client.get("/", headers={"Authorization": "Bearer secret-random-token"})
    assert missing.status_code in (401, 403)
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Incorrect bearer token"}
    assert right.status_code == 200
    assert right.json() == "success!"


@pytest.mark.parametrize("variant", VARIANTS)
def test_client_ip(runtime_platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(runtime_platform, tmp_path, "client_ip.py", variant)
    with runtime_platform.client(urls["get_ip_address"]) as client:
        response = client.get("/")
    assert response.json() == "Your IP address is 127.0.0.1"


@pytest.mark.parametrize("variant", VARIANTS)
def test_websocket_echo(runtime_platform: Platform, tmp_path: Path, variant: str) -> None:
    urls = deploy_example(runtime_platform, tmp_path, "websocket_echo.py", variant)
    # The websockets client sets Host itself, so this goes through the path form.
    host_label = httpx.URL(urls["ws_app"]).host.split(".")[0]
    big = b"x" * (2 * 1024 * 1024 - 64)
    with ws_connect(
        f"ws://127.0.0.1:{runtime_platform.port}/fn/{host_label}/ws",
        max_size=4 * 1024 * 1024,
        open_timeout=60,
    ) as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=30) == "hello"
        websocket.send(big)
        assert websocket.recv(timeout=30) == big


@pytest.mark.parametrize("variant", VARIANTS)
def test_streaming_response_arrives_event_by_event(
    runtime_platform: Platform, tmp_path: Path, variant: str
) -> None:
    urls = deploy_example(runtime_platform, tmp_path, "streaming.py", variant)
    with runtime_platform.client(urls["stream"], timeout=60) as client, client.stream(
        "GET", "/", params={"count": 4}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = [chunk for chunk in response.iter_raw() if chunk]
    # One chunk per event: the proxy forwarded each event as it was produced, not the buffered body.
    assert chunks == [f"data: event {i}\n\n".encode() for i in range(4)]


def test_path_form_for_clients_without_wildcard_dns(platform: Platform, tmp_path: Path) -> None:
    urls = deploy_example(platform, tmp_path, "square_get.py", "pathform")
    host_label = httpx.URL(urls["square"]).host.split(".")[0]
    response = httpx.get(f"{platform.url}/fn/{host_label}/", params={"x": 3}, timeout=60)
    assert response.json() == {"square": 9}
