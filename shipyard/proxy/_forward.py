"""Forwarding one HTTP exchange to a container, streaming both bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import httpx
from starlette.types import Receive, Scope, Send

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


class ClientDisconnected(Exception):
    pass


class UpstreamFailed(Exception):
    """The container broke the exchange before a response started."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def open_upstream(address: str) -> httpx.AsyncClient:
    """A keep-alive connection pool to one container's Unix socket."""
    transport = httpx.AsyncHTTPTransport(uds=address, retries=0)
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


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
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
    timeout: float,
) -> None:
    """Send the request to the container and stream its answer back.

    Raises UpstreamFailed when nothing was sent to the client yet, so the caller can still answer
    with an error page; once the response has started, a broken upstream just ends the body.
    """
    query = scope.get("query_string", b"")
    url = httpx.URL(path=path, query=query) if query else httpx.URL(path=path)
    request = client.build_request(
        scope["method"],
        url.copy_with(scheme="http", host="container"),
        headers=headers,
        content=_request_body(receive) if _has_body(scope) else None,
        timeout=httpx.Timeout(timeout, connect=10.0),
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise UpstreamFailed(
            f"no answer within the function's timeout of {timeout:g} s", timed_out=True
        ) from exc
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
        try:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError:
            pass  # The container went away mid-body; end what we have.
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await response.aclose()


async def wait_for_exit_reason(container: Container, within: float = 1.0) -> str | None:
    """Give the runtime a moment to report why a container broke a connection."""
    if container.exit_reason is None:
        try:
            await asyncio.wait_for(container.exited.wait(), within)
        except TimeoutError:
            return None
    return container.exit_reason
