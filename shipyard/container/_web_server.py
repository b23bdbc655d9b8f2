"""The reverse path to a `web_server` function's own server on 127.0.0.1:port."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from shipyard.container._processes import child_processes
from shipyard.container._types import Message, Receive, Scope, Send
from shipyard.exceptions import ContainerError

if TYPE_CHECKING:
    import httpx
    from websockets.asyncio.client import ClientConnection

_HOP_BY_HOP = frozenset(
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
    }
)
# Headers of a WebSocket handshake that the client library writes itself.
_WS_HANDSHAKE = _HOP_BY_HOP | {
    b"host",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
}
# Close codes that must never be sent in a close frame (RFC 6455, 7.4.1).
_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})


async def wait_for_port(
    port: int, limit_s: float, name: str, call: concurrent.futures.Future[Any]
) -> None:
    """Waits until 127.0.0.1:port accepts connections.

    `call` is the user's function running in a thread: it may start a server process and return, or
    run the server itself and never return; an exception from it fails the start at once.
    """
    deadline = time.monotonic() + limit_s
    while True:
        if call.done() and call.exception() is not None:
            call.result()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            pass
        else:
            writer.close()
            return
        if time.monotonic() >= deadline:
            hint = ""
            if call.done() and not child_processes():
                hint = " (no process the function started is still running: see its output in the logs)"
            raise ContainerError(
                f"web_server function {name!r} did not start listening on 0.0.0.0:{port} within "
                f"{limit_s} s; make sure your server binds 0.0.0.0, not 127.0.0.1 only{hint}"
            )
        await asyncio.sleep(0.02)


class _ClientGone(Exception):
    pass


class ReverseProxy:
    """Streams HTTP requests and responses (and WebSocket messages) between the container's socket
    and the user's server, over pooled keep-alive connections."""

    def __init__(self, port: int) -> None:
        import httpx

        self._port = port
        self._base = httpx.URL(f"http://127.0.0.1:{port}")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30.0),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        import httpx

        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        has_body = any(
            k == b"content-length" or (k == b"transfer-encoding" and b"chunked" in v.lower())
            for k, v in scope["headers"]
        )
        body_done = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk: bytes = message.get("body", b"")
                    if chunk:
                        yield chunk
                    if not message.get("more_body", False):
                        return
            finally:
                body_done.set()

        if not has_body:
            body_done.set()
        request = httpx.Request(
            scope["method"],
            self._base.copy_with(raw_path=_target(scope)),
            headers=headers,
            content=body() if has_body else None,
        )
        try:
            response = await self._client.send(request, stream=True)
        except _ClientGone:
            return
        except httpx.HTTPError as exc:
            await _plain_response(send, 502, f"upstream server on port {self._port} failed: {exc!r}")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.lower(), v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP
                    ],
                }
            )
            streaming = asyncio.create_task(_stream_body(response, send))
            watching = asyncio.create_task(_wait_disconnect(receive, body_done))
            try:
                await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # The client left (or we are cancelled): stop reading from the upstream server.
                watching.cancel()
                streaming.cancel()
                await asyncio.wait({streaming, watching})
            if not streaming.cancelled() and streaming.exception() is not None:
                streaming.result()
        finally:
            await response.aclose()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake

        if (await receive())["type"] != "websocket.connect":
            return
        headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _WS_HANDSHAKE
        ]
        uri = f"ws://127.0.0.1:{self._port}{_target(scope).decode('latin-1')}"
        try:
            upstream = await connect(
                uri,
                additional_headers=headers,
                user_agent_header=None,
                subprotocols=scope.get("subprotocols") or None,
                compression=None,
                proxy=None,
                ping_interval=None,
                max_size=None,
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            print(f"shipyard: WebSocket to the server on port {self._port} failed: {exc!r}", file=sys.stderr)
            await send({"type": "websocket.close", "code": 1011})
            return
        async with upstream:
            await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
            to_upstream = asyncio.create_task(_client_to_upstream(receive, upstream))
            to_client = asyncio.create_task(_upstream_to_client(upstream, send))
            done, pending = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()


def _target(scope: Scope) -> bytes:
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return path + b"?" + query if query else path


async def _plain_response(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _stream_body(response: httpx.Response, send: Send) -> None:
    async for chunk in response.aiter_raw():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _wait_disconnect(receive: Receive, body_done: asyncio.Event) -> None:
    # Reading before the request body is consumed would steal its chunks.
    await body_done.wait()
    message: Message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()


async def _client_to_upstream(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            await upstream.send(text if text is not None else message.get("bytes") or b"")
        elif message["type"] == "websocket.disconnect":
            code = message.get("code") or 1000
            await upstream.close(1000 if code in _RESERVED_CLOSE_CODES else code)
            return


async def _upstream_to_client(upstream: ClientConnection, send: Send) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for data in upstream:
            if isinstance(data, str):
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed:
        pass
    code = upstream.close_code or 1000
    await send(
        {
            "type": "websocket.close",
            "code": 1000 if code in _RESERVED_CLOSE_CODES else code,
            "reason": upstream.close_reason or "",
        }
    )
