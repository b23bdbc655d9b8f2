"""The CLI's view of the control-plane HTTP API: discovery, the admin token, and error conversion.

Every httpx error and every non-2xx answer becomes a `ShipyardError` here, so the commands only
ever handle Shipyard's own exceptions.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from shipyard import spec
from shipyard._client import DEFAULT_PORT as DEFAULT_PORT
from shipyard._client import detail, error_for_status
from shipyard._client import discover_url as discover_url
from shipyard._client import read_admin_token as read_admin_token
from shipyard.exceptions import ServerError

M = TypeVar("M", bound=BaseModel)

_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# Image builds can stay quiet for minutes; the deploy and log streams must not time out between lines.
_STREAM_TIMEOUT = httpx.Timeout(30.0, connect=5.0, read=None)


class ApiClient:
    """Typed calls to the control plane. Not shared between threads: each thread makes its own."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=_TIMEOUT)

    @classmethod
    def from_environment(cls, home: Path | None = None) -> ApiClient:
        return cls(discover_url(home), read_admin_token(home))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------

    def _unreachable(self) -> ServerError:
        return ServerError(
            f"Cannot reach the Shipyard server at {self.base_url}; start it with `shipyard server`")

    def request_json(self, method: str, path: str, *, params: dict[str, str] | None = None,
                 json_body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, params=params, json=json_body)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise error_for_status(response.status_code, detail(response))
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"Non-JSON answer from the server to {method} {path}") from None

    def _transport_error(self, exc: httpx.TransportError) -> ServerError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._unreachable()
        if isinstance(exc, httpx.TimeoutException):
            return ServerError(f"The Shipyard server at {self.base_url} did not answer in time")
        return ServerError(f"Lost the connection to the Shipyard server at {self.base_url}: {exc}")

    def stream_lines(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      json_body: Any = None) -> Iterator[str]:
        try:
            with self._http.stream(method, path, params=params, json=json_body,
                                   timeout=_STREAM_TIMEOUT) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_for_status(response.status_code, detail(response))
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None

    # -- API -------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any] | None:
        """The health document, or `None` when no Shipyard server answers at the URL."""
        try:
            response = self._http.get("/api/health", timeout=httpx.Timeout(2.0))
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) and body.get("ok") is True else None

    def deploy(self, request: spec.DeployRequest,
               on_progress: Callable[[str], None] | None = None) -> spec.DeployResponse:
        """POST the app and follow the NDJSON stream until its result or error event."""
        body = request.model_dump(mode="json")
        for line in self.stream_lines("POST", "/api/apps/deploy", json_body=body):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                raise ServerError(f"Unexpected line in the deploy stream: {line[:200]!r}") from None
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "progress":
                if on_progress is not None:
                    on_progress(str(event.get("message", "")))
            elif kind == "result":
                return _parse(spec.DeployResponse, event.get("data"))
            elif kind == "error":
                status = event.get("status")
                raise error_for_status(status if isinstance(status, int) else 500,
                                       str(event.get("message", "deploy failed")))
            else:
                raise ServerError(f"Unexpected event in the deploy stream: {line[:200]!r}")
        raise ServerError("The deploy stream ended without a result; see the server log")

    def list_apps(self, env: str) -> list[spec.AppInfo]:
        return _parse_list(spec.AppInfo, self.request_json("GET", "/api/apps", params={"env": env}))

    def stop_app(self, name: str, env: str) -> dict[str, Any]:
        return _as_dict(self.request_json("POST", f"/api/apps/{_quote(name)}/stop", params={"env": env}))

    def delete_app_by_id(self, app_id: str) -> None:
        self.request_json("DELETE", f"/api/apps/by-id/{_quote(app_id)}")

    def heartbeat(self, app_id: str) -> None:
        self.request_json("POST", f"/api/apps/by-id/{_quote(app_id)}/heartbeat")

    def scale_function(
        self, name: str, tag: str, env: str, changes: dict[str, Any]
    ) -> spec.AutoscalerSettings:
        body = self.request_json("POST", f"/api/apps/{_quote(name)}/functions/{_quote(tag)}/scale",
                             params={"env": env}, json_body=changes)
        return _parse(spec.AutoscalerSettings, body)

    def app_logs(self, name: str, env: str, follow: bool) -> Iterator[str]:
        params = {"env": env, "follow": "true" if follow else "false"}
        return self.stream_lines("GET", f"/api/apps/{_quote(name)}/logs", params=params)

    def create_secret(self, name: str, env: str, values: dict[str, str], force: bool) -> spec.SecretInfo:
        body = {"name": name, "env": env, "values": values, "force": force}
        return _parse(spec.SecretInfo, self.request_json("POST", "/api/secrets", json_body=body))

    def list_secrets(self, env: str) -> list[spec.SecretInfo]:
        return _parse_list(spec.SecretInfo, self.request_json("GET", "/api/secrets", params={"env": env}))

    def delete_secret(self, name: str, env: str) -> None:
        self.request_json("DELETE", f"/api/secrets/{_quote(name)}", params={"env": env})

    def create_proxy_token(self, env: str) -> spec.ProxyTokenCreated:
        return _parse(spec.ProxyTokenCreated,
                      self.request_json("POST", "/api/proxy-tokens", params={"env": env}))

    def list_proxy_tokens(self, env: str) -> list[spec.ProxyTokenInfo]:
        body = self.request_json("GET", "/api/proxy-tokens", params={"env": env})
        return _parse_list(spec.ProxyTokenInfo, body)

    def revoke_proxy_token(self, token_id: str) -> None:
        self.request_json("DELETE", f"/api/proxy-tokens/{_quote(token_id)}")


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _as_dict(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ServerError(f"Unexpected answer from the server: {str(body)[:200]}")
    return body


def _parse(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ServerError(f"Unexpected answer from the server ({model.__name__}): {exc}") from None


def _parse_list(model: type[M], body: Any) -> list[M]:
    if not isinstance(body, list):
        raise ServerError(f"Unexpected answer from the server: expected a list of {model.__name__}")
    return [_parse(model, item) for item in body]
