"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

import socket
from typing import Any

from .conftest import Platform


def raw_request(platform: Platform, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", platform.port), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_app_file_with_syntax_error(platform: Platform, app_file: Any) -> None:
    path = app_file("from shipyard import App\napp = App('broken-syntax')\ndef f(:\n    pass\n")
    result = platform.cli("deploy", str(path), check=False)
    assert result.returncode != 0
    assert "SyntaxError" in result.stderr
    assert path.name in result.stderr
    assert "broken-syntax" not in [a["name"] for a in platform.apps()]


def test_app_file_with_import_error(platform: Platform, app_file: Any) -> None:
    path = app_file("import definitely_not_a_module\nfrom shipyard import App\napp = App('broken-import')\n")
    result = platform.cli("deploy", str(path), check=False)
    assert result.returncode != 0
    assert "definitely_not_a_module" in result.stderr
    assert "broken-import" not in [a["name"] for a in platform.apps()]


def test_missing_secret_fails_the_deploy(platform: Platform, app_file: Any) -> None:
    path = app_file(
        "from shipyard import App, Secret, fastapi_endpoint\n"
        "app = App('needs-secret')\n"
        "@app.function(secrets=[Secret.from_name('no-such-secret')])\n"
        "@fastapi_endpoint()\n"
        "def f():\n    return 1\n"
    )
    result = platform.cli("deploy", str(path), check=False)
    assert result.returncode != 0
    assert "no-such-secret" in result.stderr
    assert "needs-secret" not in [a["name"] for a in platform.apps()]


def test_exception_in_enter_reaches_the_request_and_the_logs(platform: Platform, app_file: Any) -> None:
    path = app_file(
        "from shipyard import App, enter, fastapi_endpoint\n"
        "app = App('bad-enter')\n"
        "@app.cls()\n"
        "class Model:\n"
        "    @enter()\n"
        "    def load(self):\n"
        "        raise RuntimeError('weights are corrupt')\n"
        "    @fastapi_endpoint()\n"
        "    def predict(self):\n"
        "        return 1\n"
    )
    urls = platform.deploy(path)
    with platform.client(urls["Model.predict"], timeout=60) as client:
        response = client.get("/")
    assert 500 <= response.status_code < 600
    assert "weights are corrupt" in response.text
    logs = platform.cli("app", "logs", "bad-enter").stdout
    assert "Traceback" in logs and "weights are corrupt" in logs


def test_exception_at_import_inside_the_container(platform: Platform, app_file: Any) -> None:
    path = app_file(
        "import os\n"
        "from shipyard import App, fastapi_endpoint\n"
        "if os.environ.get('SHIPYARD_IS_REMOTE'):\n"
        "    raise ImportError('missing native library inside the container')\n"
        "app = App('bad-import-remote')\n"
        "@app.function()\n"
        "@fastapi_endpoint()\n"
        "def f():\n    return 1\n"
    )
    urls = platform.deploy(path)
    with platform.client(urls["f"], timeout=60) as client:
        response = client.get("/")
    assert 500 <= response.status_code < 600
    assert "missing native library" in response.text
    logs = platform.cli("app", "logs", "bad-import-remote").stdout
    assert "Traceback" in logs


def test_malformed_request_and_oversized_header(platform: Platform, app_file: Any) -> None:
    urls = platform.deploy(app_file(
        "from shipyard import App, fastapi_endpoint\napp = App('sturdy')\n"
        "@app.function()\n@fastapi_endpoint()\ndef f():\n    return 'ok'\n"
    ))
    garbage = raw_request(platform, b"THIS IS NOT HTTP\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 4")
    host = urls["f"].split("//")[1].split(":")[0]
    huge = b"x" * 200_000
    oversized = raw_request(
        platform, b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Big: " + huge + b"\r\n\r\n"
    )
    assert oversized[:10] in (b"HTTP/1.1 4", b"") or oversized.startswith(b"HTTP/1.1 4")
    with platform.client(urls["f"], timeout=60) as client:
        assert client.get("/").json() == "ok"
