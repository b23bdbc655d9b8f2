"""Forwarding one HTTP exchange to a container, streaming both bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import httpx
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from ._pool import Container

# Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the ones we rewrite.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)
MAX_WEBSOCKET_MESSAGE = 2 * 1024 * 1024
# The function's timeout is enforced as one deadline around the exchange (see forward_http).
_CONNECT_ONLY = httpx.Timeout(None, connect=10.0)


class ClientDisconnected(Exception):
    pass


class ResponseTimedOut(Exception):
    """The function's timeout passed while its response was streaming."""


class UpstreamFailed(Exception):
    """The container broke the exchange before a response started."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def tcp_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a container reached over TCP (`tcp://host:port`); None for a Unix socket path."""
    if not address.startswith("tcp://"):
        return None
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    return host.strip("[]"), int(port)


class _PinnedTransport(httpx.AsyncBaseTransport):
    """Sends every request to one host:port whatever its URL says, as the Unix socket transport does.

    Callers build URLs such as `http://container/...`; the Host header is already set from them (or
    from the forwarded headers), so only the connection target changes.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._inner = httpx.AsyncHTTPTransport(retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self._host, port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def open_upstream(address: str) -> httpx.AsyncClient:
    """A keep-alive connection pool to one container: a Unix socket path or `tcp://host:port`."""
    tcp = tcp_address(address)
    transport: httpx.AsyncBaseTransport = (
        httpx.AsyncHTTPTransport(uds=address, retries=0) if tcp is None else _PinnedTransport(*tcp)
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(None, connect=10.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
    )


def forwarded_headers(
    scope: Scope, *, drop: Iterable[bytes] = ()
) -> list[tuple[bytes, bytes]]:
    dropped = HOP_BY_HOP.union(drop)
    headers = [(k, v) for k, v in scope["headers"] if k not in dropped]
    client = scope.get("client")
    if client:
        headers.append((b"x-forwarded-for", client[0].encode()))
    headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    return headers


async def request_body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives from the client, chunk by chunk (never held whole)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


def _has_body(scope: Scope) -> bool:
    return any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])


async def forward_http(
    client: httpx.AsyncClient,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    path: str,
    headers: list[tuple[bytes, bytes]],
    limit_s: float,
) -> None:
    """Send the request to the container and stream its answer back, all within `limit_s` seconds.

    The limit bounds the whole exchange (not each read), as the function's timeout bounds one input.
    Raises UpstreamFailed when nothing was sent to the client yet, so the caller can still answer
    with an error page; once the response has started, a broken upstream just ends the body and a
    timeout raises ResponseTimedOut.
    """
    query = scope.get("query_string", b"")
    url = httpx.URL(path=path, query=query) if query else httpx.URL(path=path)
    request = client.build_request(
        scope["method"],
        url.copy_with(scheme="http", host="container"),
        headers=headers,
        content=request_body(receive) if _has_body(scope) else None,
        timeout=_CONNECT_ONLY,
    )
    response_started = False
    try:
        async with asyncio.timeout(limit_s):
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise UpstreamFailed(str(exc) or type(exc).__name__) from exc
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": [
                            (k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP
                        ],
                    }
                )
                response_started = True
                try:
                    async for chunk in response.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except httpx.HTTPError:
                    pass  # The container went away mid-body; end what we have.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await response.aclose()
    except TimeoutError:
        if response_started:
            raise ResponseTimedOut from None
        raise UpstreamFailed(
            f"the request did not complete within the function's timeout of {limit_s:g} s", timed_out=True
        ) from None


async def wait_for_exit_reason(container: Container, within: float = 1.0) -> str | None:
    """Give the runtime a moment to report why a container broke a connection."""
    if container.exit_reason is None:
        try:
            await asyncio.wait_for(container.exited.wait(), within)
        except TimeoutError:
            return None
    return container.exit_reason
