"""WebSocket relay between a client and a container (RFC 6455, messages up to 2 MiB)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.asyncio.client import connect as tcp_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ._forward import MAX_WEBSOCKET_MESSAGE, forwarded_headers, tcp_address
from ._pool import Container

# The client library negotiates these itself with the container.
_HANDSHAKE_HEADERS = frozenset(
    {
        b"host",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)


async def relay_websocket(
    scope: Scope, receive: Receive, send: Send, container: Container, *, path: str
) -> None:
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "container")
    query = scope.get("query_string", b"").decode("latin-1")
    uri = f"ws://{host}{path}" + (f"?{query}" if query else "")
    headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in forwarded_headers(scope, drop=_HANDSHAKE_HEADERS)
    ]
    try:
        options: dict[str, Any] = {
            "additional_headers": headers,
            "subprotocols": scope.get("subprotocols") or None,
            "compression": None,
            "max_size": MAX_WEBSOCKET_MESSAGE,
            "proxy": None,
            "ping_interval": None,
            "user_agent_header": None,
        }
        tcp = tcp_address(container.address)
        upstream = await (
            unix_connect(container.address, uri, **options) if tcp is None
            else tcp_connect(uri, host=tcp[0], port=tcp[1], **options)
        )
    except (OSError, InvalidHandshake, TimeoutError):
        await send({"type": "websocket.close", "code": 1011})
        return
    async with upstream:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        client_to_upstream = asyncio.create_task(_pump_client(receive, upstream))
        upstream_to_client = asyncio.create_task(_pump_upstream(upstream, send))
        done, pending = await asyncio.wait(
            {client_to_upstream, upstream_to_client}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task
        for task in done:
            with contextlib.suppress(ConnectionClosed):
                task.result()


async def _pump_client(receive: Receive, upstream: ClientConnection) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(message.get("code", 1000))
            return
        if message.get("text") is not None:
            await upstream.send(message["text"])
        elif message.get("bytes") is not None:
            await upstream.send(message["bytes"])


async def _pump_upstream(upstream: ClientConnection, send: Send) -> None:
    try:
        async for message in upstream:
            if isinstance(message, str):
                await send({"type": "websocket.send", "text": message})
            else:
                await send({"type": "websocket.send", "bytes": message})
    except ConnectionClosed:
        pass
    code = upstream.close_code or 1000
    await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""})
