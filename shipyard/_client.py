"""Finding and talking to the control plane, shared by the CLI and the SDK.

Outside a container: `SHIPYARD_SERVER_URL` (else the running server's `server.json`) with the admin token.
Inside a container: the Unix socket in `SHIPYARD_API_SOCKET` with the token in `SHIPYARD_CALL_TOKEN` (the
container's network namespace cannot reach the host's loopback).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from shipyard._paths import HomeLayout, default_home
from shipyard.exceptions import (
    AlreadyExistsError,
    AuthError,
    InvalidError,
    NotFoundError,
    ServerError,
    ShipyardError,
)

DEFAULT_PORT = 8787
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
_CONNECT_TIMEOUT = 5.0


def discover_url(home: Path | None = None) -> str:
    """The server URL: `SHIPYARD_SERVER_URL`, else the running server's `server.json`, else the default."""
    explicit = os.environ.get("SHIPYARD_SERVER_URL")
    if explicit:
        return explicit.rstrip("/")
    info_path = HomeLayout(home or default_home()).server_info
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return DEFAULT_URL
    url = info.get("url") if isinstance(info, dict) else None
    return url.rstrip("/") if isinstance(url, str) and url else DEFAULT_URL


def read_admin_token(home: Path | None = None) -> str:
    """The admin token: `SHIPYARD_TOKEN`, else `$SHIPYARD_HOME/admin_token`."""
    explicit = os.environ.get("SHIPYARD_TOKEN")
    if explicit:
        return explicit.strip()
    path = HomeLayout(home or default_home()).admin_token
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise AuthError(f"No admin token: {path} does not exist. Start the server once with "
                        "`shipyard server` to create it, or set SHIPYARD_TOKEN") from None
    except OSError as exc:
        raise AuthError(f"Cannot read the admin token {path}: {exc.strerror}") from None
    if not token:
        raise AuthError(f"Admin token file {path} is empty")
    return token


_STATUS_ERRORS: dict[int, type[ShipyardError]] = {
    400: InvalidError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: AlreadyExistsError,
    422: InvalidError,
}


def error_for_status(status: int, message: str) -> ShipyardError:
    """The Shipyard exception matching an HTTP status from the API."""
    return _STATUS_ERRORS.get(status, ServerError)(message)


def detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, str):
            return detail
        # FastAPI's own validation errors put a list of {"loc": [...], "msg": ...} in `detail`.
        if isinstance(detail, list):
            return "; ".join(validation_problem(item) for item in detail)
        return json.dumps(detail)
    text = response.text.strip()
    return text or f"HTTP {response.status_code} {response.reason_phrase}"


def validation_problem(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", []) if part != "body")
    return f"{location}: {item.get('msg', '')}" if location else str(item.get("msg", item))


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def current_environment() -> str:
    """The environment of this container's app, else `SHIPYARD_ENVIRONMENT`, else `main`."""
    return os.environ.get("SHIPYARD_ENVIRONMENT") or "main"


class ControlPlane:
    """A synchronous client of the control plane for SDK objects (`.remote()`, `Dict`, `Volume`)."""

    def __init__(self) -> None:
        socket = os.environ.get("SHIPYARD_API_SOCKET")
        if socket:
            self.where = f"the control plane socket {socket}"
            transport = httpx.HTTPTransport(uds=socket)
            base_url, token = "http://shipyard", os.environ.get("SHIPYARD_CALL_TOKEN", "")
        else:
            base_url = discover_url()
            self.where = base_url
            transport = httpx.HTTPTransport()
            token = read_admin_token()
        self._http = httpx.Client(transport=transport, base_url=base_url,
                                  headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx.Timeout(None, connect=_CONNECT_TIMEOUT))

    def _failed(self, exc: httpx.TransportError) -> ServerError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ServerError(
                f"Cannot reach the Shipyard server at {self.where}; start it with `shipyard server`")
        return ServerError(f"Lost the connection to the Shipyard server at {self.where}: {exc}")

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                content: bytes | None = None, json_body: Any = None) -> httpx.Response:
        """The response of a 2xx answer; every other answer raises the matching `ShipyardError`."""
        try:
            response = self._http.request(method, path, params=params, content=content, json=json_body)
        except httpx.TransportError as exc:
            raise self._failed(exc) from None
        if response.status_code >= 400:
            raise error_for_status(response.status_code, detail(response))
        return response

    @contextmanager
    def stream(self, method: str, path: str, *, params: dict[str, str] | None = None,
               content: bytes | None = None) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, params=params, content=content) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_for_status(response.status_code, detail(response))
                yield response
        except httpx.TransportError as exc:
            raise self._failed(exc) from None


_lock = threading.Lock()
_clients: dict[int, ControlPlane] = {}


def control_plane() -> ControlPlane:
    """This process's client (a forked child makes its own)."""
    with _lock:
        client = _clients.get(os.getpid())
        if client is None:
            client = _clients[os.getpid()] = ControlPlane()
        return client
