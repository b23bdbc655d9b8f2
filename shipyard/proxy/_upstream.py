"""The proxy's HTTP/1.1 client to containers: keep-alive connections over the container's Unix socket.

A general-purpose client (httpx) costs more per request than everything else in the proxy together:
its pool scans every connection per request and its layers allocate heavily. This one does what the
proxy needs and no more: asyncio protocols, httptools (C) response parsing, one idle-connection stack
per container, both bodies streamed with flow control in each direction.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import httptools
from starlette.types import Send

from ._forward import HOP_BY_HOP, ResponseTimedOut, UpstreamFailed, tcp_address

CONNECT_TIMEOUT_S = 10.0
MAX_IDLE = 256
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
_HIGH_WATER = 1024 * 1024
"""Response bytes buffered from a container before we stop reading it (the client is slower)."""


class _Protocol(asyncio.Protocol):
    """One connection: parses responses; the proxy sends at most one request at a time on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: str | None = None
        self._head: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self.complete = False
        self._data = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the container answered with a protocol upgrade")
        except httptools.HttpParserError as exc:
            self._fail(f"invalid HTTP response from the container: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail("the container closed the connection" + (f" ({exc})" if exc else ""))
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._data.set()

    def on_message_complete(self) -> None:
        self.complete = True
        self._data.set()

    # -- used by Upstream ---------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.closed = True
        if self._head is not None and not self._head.done():
            self._head.set_exception(UpstreamFailed(message))
            self._head.exception()  # retrieved: the sender may fail on its write before awaiting it
        self._data.set()
        if self.transport is not None:
            self.transport.close()

    def begin(self) -> asyncio.Future[None]:
        self.status = 0
        self.headers = []
        self.complete = False
        self._chunks.clear()
        self._buffered = 0
        self._head = asyncio.get_running_loop().create_future()
        return self._head

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise UpstreamFailed(self.error or "the container closed the connection")
        self.transport.write(data)
        if not self._writable.is_set():
            await self._writable.wait()

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._reading_paused and self._buffered < _HIGH_WATER // 2 and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resume_reading()
                yield chunk
            if self.complete or self.error is not None:
                return
            self._data.clear()
            await self._data.wait()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Upstream:
    """Keep-alive connections to one container (a Unix socket path, or `tcp://host:port`)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._idle: list[_Protocol] = []
        self._closed = False

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                node = tcp_address(self.address)
                if node is None:
                    _transport, protocol = await loop.create_unix_connection(_Protocol, self.address)
                else:
                    _transport, protocol = await loop.create_connection(_Protocol, *node)
        except (OSError, TimeoutError) as exc:
            raise UpstreamFailed(f"cannot connect to the container: {exc or type(exc).__name__}") from exc
        return protocol

    def _reusable(self) -> _Protocol | None:
        while self._idle:
            protocol = self._idle.pop()
            if not protocol.closed:
                return protocol
        return None

    def _release(self, protocol: _Protocol) -> None:
        if self._closed or protocol.closed or not protocol.keep_alive or len(self._idle) >= MAX_IDLE:
            protocol.close()
        else:
            self._idle.append(protocol)

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def exchange(
        self,
        method: str,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        send: Send,
        *,
        chunked: bool,
        limit_s: float,
    ) -> None:
        """Send one request (head already serialized) and stream the answer to `send` (ASGI).

        Within `limit_s` for the whole exchange. Raises UpstreamFailed when nothing was sent to the
        client yet; ResponseTimedOut when the deadline passes mid-response.
        """
        started = False
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(limit_s):
                protocol = self._reusable()
                reused = protocol is not None
                if protocol is None:
                    protocol = await self._connect()
                try:
                    head_ready = await _send_request(protocol, head, body, chunked)
                    await head_ready
                except UpstreamFailed:
                    # A kept-alive connection the container closed meanwhile: one retry on a fresh one,
                    # only for a safe method without a body (a body cannot be replayed).
                    if not reused or body is not None or method not in _RETRYABLE:
                        raise
                    protocol = await self._connect()
                    await (await _send_request(protocol, head, None, chunked))
                await send({
                    "type": "http.response.start",
                    "status": protocol.status,
                    "headers": [(k, v) for k, v in protocol.headers if k not in HOP_BY_HOP],
                })
                started = True
                if method != "HEAD":
                    async for chunk in protocol.body():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                else:
                    protocol.keep_alive = False  # the parser cannot know this response has no body
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            if protocol is not None:
                protocol.close()
            if started:
                raise ResponseTimedOut from None
            raise UpstreamFailed(
                f"the request did not complete within the function's timeout of {limit_s:g} s", timed_out=True
            ) from None
        except BaseException:
            if protocol is not None:
                protocol.close()
            raise
        if protocol.error is not None or (not protocol.complete and method != "HEAD"):
            protocol.close()  # the container broke the body off: the client gets what there was
        else:
            self._release(protocol)


async def _send_request(
    protocol: _Protocol, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool
) -> asyncio.Future[None]:
    head_ready = protocol.begin()
    await protocol.write(head)
    if body is not None:
        async for chunk in body:
            await protocol.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            await protocol.write(b"0\r\n\r\n")
    return head_ready


def request_head(method: str, target: bytes, headers: list[tuple[bytes, bytes]], chunked: bool) -> bytes:
    """Serialize the request line and headers; a body of unknown length goes chunked."""
    parts = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
