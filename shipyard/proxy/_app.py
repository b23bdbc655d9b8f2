"""The proxy's ASGI application: route by host (or path form), authenticate, queue, forward."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..exceptions import ContainerError
from ._forward import UpstreamFailed, forward_http, forwarded_headers, wait_for_exit_reason
from ._pool import Container
from ._routing import RouteEntry, RoutingTable
from ._websocket import relay_websocket

PATH_FORM_PREFIX = "/fn/"
UNAUTHORIZED = (
    "Missing or invalid proxy token. Pass the Modal-Key and Modal-Secret headers (or "
    "'Authorization: Bearer wk-….ws-…') of a proxy token of this environment; create one with "
    "`shipyard workspace proxy-tokens create`."
)
_AUTH_HEADERS = (b"modal-key", b"modal-secret")
# httptools parses headers of any size; refuse big ones before they reach a container.
MAX_HEADER_BYTES = 64 * 1024


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _credentials(scope: Scope) -> tuple[str, str] | None:
    key, secret = _header(scope, b"modal-key"), _header(scope, b"modal-secret")
    if key and secret:
        return key.decode("latin-1"), secret.decode("latin-1")
    authorization = _header(scope, b"authorization")
    if authorization and authorization[:7].lower() == b"bearer ":
        token_id, _, token_secret = authorization[7:].strip().decode("latin-1").partition(".")
        if token_id.startswith("wk-") and token_secret:
            return token_id, token_secret
    return None


async def send_text(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ProxyApp:
    """Dispatches function traffic to containers and everything else to `fallback` (the API)."""

    def __init__(self, table: RoutingTable, *, domain: str, fallback: ASGIApp | None = None) -> None:
        self.table = table
        self._suffix = "." + domain
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if self._fallback is not None:
                await self._fallback(scope, receive, send)
            return
        if sum(len(key) + len(value) for key, value in scope["headers"]) > MAX_HEADER_BYTES:
            await self._refuse(scope, send, 431, "Request header fields too large")
            return
        host_label, path = self._target(scope)
        if host_label is None:
            if self._fallback is not None:
                await self._fallback(scope, receive, send)
            elif scope["type"] == "http":
                await send_text(send, 404, "Not found")
            return
        entry = self.table.lookup(host_label)
        if entry is None:
            message = self.table.stopped_message(host_label) or f"No web function is served at '{host_label}'."
            await self._refuse(scope, send, 404, message)
            return
        strip: tuple[bytes, ...] = ()
        if entry.route.requires_proxy_auth:
            credentials = _credentials(scope)
            if credentials is None or not self.table.token_is_valid(*credentials, entry.route.environment):
                await self._refuse(scope, send, 401, UNAUTHORIZED)
                return
            strip = (*_AUTH_HEADERS, b"authorization") if _header(scope, b"modal-key") is None else _AUTH_HEADERS
        await self._serve(entry, scope, receive, send, path=path, strip=strip)

    def _target(self, scope: Scope) -> tuple[str | None, str]:
        path: str = scope["path"]
        host = _header(scope, b"host")
        if host is not None:
            name = host.decode("latin-1").rsplit(":", 1)[0].lower()
            if name.endswith(self._suffix) and "--" in name:
                return name[: -len(self._suffix)], path
        if path.startswith(PATH_FORM_PREFIX):
            label, slash, rest = path[len(PATH_FORM_PREFIX) :].partition("/")
            return label.lower(), slash + rest
        return None, path

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        else:
            await send_text(send, status, message)

    async def _serve(
        self,
        entry: RouteEntry,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        path: str,
        strip: tuple[bytes, ...],
    ) -> None:
        try:
            container = await entry.pool.acquire()
        except ContainerError as exc:
            await self._refuse(scope, send, 503, f"Function '{entry.route.tag}' is unavailable: {exc}")
            return
        try:
            if scope["type"] == "websocket":
                await relay_websocket(scope, receive, send, container, path=path or "/")
                return
            await self._forward(entry, container, scope, receive, send, path=path or "/", strip=strip)
        finally:
            entry.pool.release(container)

    async def _forward(
        self,
        entry: RouteEntry,
        container: Container,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        path: str,
        strip: tuple[bytes, ...],
    ) -> None:
        client = container.upstream
        try:
            await forward_http(
                client,
                scope,
                receive,
                send,
                path=path,
                headers=forwarded_headers(scope, drop=strip),
                timeout=entry.route.timeout,
            )
        except UpstreamFailed as exc:
            reason = await wait_for_exit_reason(container)
            if reason is not None:
                message = f"Container {container.container_id} crashed while handling the request: {reason}"
                await send_text(send, 502, message)
            elif exc.timed_out:
                await send_text(send, 504, f"Function '{entry.route.tag}' timed out: {exc}")
            else:
                await send_text(send, 502, f"Container {container.container_id} failed: {exc}")

