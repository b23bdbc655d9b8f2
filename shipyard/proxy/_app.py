"""The proxy's ASGI application: route by host (or path form), authenticate, queue, forward."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import ContainerError
from ._forward import (
    ClientDisconnected,
    ResponseTimedOut,
    UpstreamFailed,
    forwarded_headers,
    request_body,
    tcp_address,
    wait_for_exit_reason,
)
from ._limits import BodyTooLarge, ProxyLimits, RateLimiter, capped_receive, declared_length
from ._metrics import CONTENT_TYPE, FunctionMetrics, Metrics
from ._pool import Container, QueueFull
from ._routing import RouteEntry, RoutingTable
from ._upstream import request_head
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
METRICS_PATH = "/metrics"
# The proxy answered the client's `Expect: 100-continue` already (by reading the body).
_NOT_FORWARDED = (b"expect",)
# Status recorded for a request whose client left before any response started (nginx's convention).
CLIENT_CLOSED = 499


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


async def send_text(
    send: Send,
    status: int,
    text: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: str = "text/plain; charset=utf-8",
    body: bytes | None = None,
) -> None:
    if body is None:
        body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def request_target(scope: Scope, suffix: str) -> tuple[str | None, str]:
    """(host label, path inside the function) of a request; no label when it is not for a function.

    `suffix` is `.` + the domain of function hosts.
    """
    path: str = scope["path"]
    host = _header(scope, b"host")
    if host is not None:
        name = host.decode("latin-1").rsplit(":", 1)[0].lower()
        if name.endswith(suffix) and "--" in name:
            return name[: -len(suffix)], path
    if path.startswith(PATH_FORM_PREFIX):
        label, slash, rest = path[len(PATH_FORM_PREFIX) :].partition("/")
        return label.lower(), slash + rest
    return None, path


class ProxyApp:
    """Dispatches function traffic to containers and everything else to `fallback` (the API)."""

    def __init__(
        self,
        table: RoutingTable,
        *,
        domain: str,
        fallback: ASGIApp | None = None,
        limits: ProxyLimits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.table = table
        self._suffix = "." + domain
        self._fallback = fallback
        self.limits = limits or ProxyLimits()
        self._rate = RateLimiter(self.limits)
        self.metrics = metrics or Metrics()

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
            if path == METRICS_PATH and scope["type"] == "http":
                await send_text(send, 200, "", content_type=CONTENT_TYPE, body=self.metrics.render())
            elif self._fallback is not None:
                await self._fallback(scope, receive, send)
            elif scope["type"] == "http":
                await send_text(send, 404, "Not found")
            return
        entry = self.table.lookup(host_label)
        if entry is None:
            message = (
                self.table.stopped_message(host_label) or f"No web function is served at '{host_label}'."
            )
            await self._refuse(scope, send, 404, message)
            return
        if scope["type"] != "http":
            await self._admit(entry, scope, receive, send, path)
            return
        route = entry.route
        metrics = self.metrics.for_function(route.function_id, route.app_name, route.tag)
        started = time.perf_counter()
        status = CLIENT_CLOSED

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._admit(entry, scope, receive, tracked_send, path, metrics)
        finally:
            metrics.observe(status, time.perf_counter() - started)

    async def _admit(
        self,
        entry: RouteEntry,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        metrics: FunctionMetrics | None = None,
    ) -> None:
        """Rate limit, proxy auth and body cap, then serve."""
        retry_after = self._rate.retry_after()
        if retry_after is not None:
            await self._refuse(
                scope, send, 429,
                f"Too many requests: this workspace is limited to {self.limits.rate_per_second:g} requests/s "
                f"(burst {self.limits.burst_seconds:g} s); retry after {retry_after} s.",
                retry_after=retry_after,
            )
            return
        strip: tuple[bytes, ...] = ()
        if entry.route.requires_proxy_auth:
            credentials = _credentials(scope)
            if credentials is None or not self.table.token_is_valid(*credentials, entry.route.environment):
                await self._refuse(scope, send, 401, UNAUTHORIZED)
                return
            bearer = _header(scope, b"modal-key") is None
            strip = (*_AUTH_HEADERS, b"authorization") if bearer else _AUTH_HEADERS
        if scope["type"] == "http":
            cap = self.limits.max_body_bytes
            length = declared_length(scope["headers"])
            if length is not None and length > cap:
                message = f"Request body of {length} bytes exceeds the limit of {cap} bytes."
                await send_text(send, 413, message)
                return
            if length is None:
                receive = capped_receive(receive, cap)
        await self._serve(entry, scope, receive, send, path=path, strip=strip, metrics=metrics)

    def _target(self, scope: Scope) -> tuple[str | None, str]:
        return request_target(scope, self._suffix)

    async def _refuse(
        self, scope: Scope, send: Send, status: int, message: str, *, retry_after: int | None = None
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        else:
            headers = None if retry_after is None else [(b"retry-after", str(retry_after).encode())]
            await send_text(send, status, message, headers)

    async def _serve(
        self,
        entry: RouteEntry,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        path: str,
        strip: tuple[bytes, ...],
        metrics: FunctionMetrics | None,
    ) -> None:
        pool = entry.pool
        container = pool.acquire_nowait()
        if container is None:
            waiting_since = time.perf_counter()
            try:
                container = await pool.acquire()
            except ContainerError as exc:
                await self._refuse(
                    scope, send, 503, f"Function '{entry.route.tag}' is unavailable: {exc}",
                    retry_after=1 if isinstance(exc, QueueFull) else 5,
                )
                return
            if metrics is not None:
                metrics.queue_wait.observe(time.perf_counter() - waiting_since)
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
        query: bytes = scope.get("query_string", b"")
        target = path.encode() + b"?" + query if query else path.encode()
        headers = forwarded_headers(scope, drop=(*strip, *_NOT_FORWARDED))
        has_body = any(k == b"content-length" or k == b"transfer-encoding" for k, _ in scope["headers"])
        chunked = has_body and not any(k == b"content-length" for k, _ in scope["headers"])
        method: str = scope["method"]
        try:
            await container.connections.exchange(
                method,
                request_head(method, target, headers, chunked),
                request_body(receive) if has_body else None,
                send,
                chunked=chunked,
                limit_s=entry.route.timeout,
            )
        except UpstreamFailed as exc:
            if exc.timed_out:
                await send_text(send, 504, f"Function '{entry.route.tag}' timed out: {exc}")
                return
            reason = await wait_for_exit_reason(container)
            if reason is not None:
                message = f"Container {container.container_id} crashed while handling the request: {reason}"
                await send_text(send, 502, message)
            else:
                node = tcp_address(container.address)
                where = f" on node {node[0]}" if node is not None else ""
                await send_text(send, 502, f"Container {container.container_id}{where} failed: {exc}")
        except BodyTooLarge as exc:
            await send_text(send, 413, f"{exc}.")
        except (ClientDisconnected, ResponseTimedOut):
            # Returning without completing the response makes the server close the connection: the
            # client sees a truncated response rather than a well-formed partial one.
            return

