"""The OpenAI surface of endpoints, in front of the proxy.

For host labels that belong to endpoints it allows only the OpenAI routes, asks the engine for
token usage on streams (and strips that extra chunk when the client did not ask for it), records
usage per request, and turns the proxy's plain-text errors into OpenAI error envelopes. Streams
pass through chunk by chunk; only events that carry usage are parsed. Everything else goes to the
wrapped app untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTES = ("/v1/models", "/v1/chat/completions", "/v1/completions")
EMBEDDINGS = "/v1/embeddings"
MAX_REQUEST_BYTES = 16 * 1024 * 1024
_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}

_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")
_USAGE = b'"usage"'

UsageSink = Callable[[str, int, int], None]
"""(endpoint id, prompt tokens, completion tokens), called once per completed request."""
Target = Callable[[Scope], "tuple[str | None, str]"]


@dataclass(frozen=True)
class GatewayRoute:
    endpoint_id: str
    embeddings: bool = False
    stopped: str | None = None
    """Set while the endpoint is stopped: the message every request gets (404)."""


def error_body(status: int, message: str) -> bytes:
    fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
    kind, code = _ERROR_KINDS.get(status, fallback)
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


async def send_error(send: Send, status: int, message: str) -> None:
    body = error_body(status, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class EndpointGateway:
    def __init__(self, app: ASGIApp, *, target: Target, sink: UsageSink) -> None:
        self._app = app
        self._target = target
        self._sink = sink
        self.routes: dict[str, GatewayRoute] = {}
        """Host label → endpoint; kept by the endpoint service."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.routes:
            await self._app(scope, receive, send)
            return
        label, path = self._target(scope)
        route = self.routes.get(label) if label is not None else None
        if route is None:
            await self._app(scope, receive, send)
            return
        if route.stopped is not None:
            await send_error(send, 404, route.stopped)
            return
        allowed = (*ROUTES, EMBEDDINGS) if route.embeddings else ROUTES
        if path.rstrip("/") not in allowed:
            await send_error(send, 404, f"Unknown path {path}: endpoints serve {', '.join(allowed)}")
            return
        await _Exchange(self._app, route, self._sink).run(scope, receive, send)


class _Exchange:
    """One request through the gateway."""

    def __init__(self, app: ASGIApp, route: GatewayRoute, sink: UsageSink) -> None:
        self._app = app
        self._route = route
        self._sink = sink
        self._strip_usage_chunk = False
        self._status = 0
        self._stream = False
        self._error_text: bytearray | None = None
        self._buffer = bytearray()
        self._usage: tuple[int, int] | None = None

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        if scope["method"] == "POST":
            body = await _read_body(receive)
            if body is None:
                await send_error(send, 413, "Request body too large")
                return
            body = self._prepare(body)
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            scope["headers"].append((b"content-length", str(len(body)).encode()))
            receive = _replay(body, receive)
        await self._app(scope, receive, self._on_send)
        if self._usage is not None and 200 <= self._status < 300:
            self._sink(self._route.endpoint_id, *self._usage)

    def _prepare(self, body: bytes) -> bytes:
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        if not isinstance(payload, dict) or not payload.get("stream"):
            return body
        options = payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return body
        self._strip_usage_chunk = True
        payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return json.dumps(payload).encode()

    async def _on_send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            headers = dict(message.get("headers", []))
            content_type = bytes(headers.get(b"content-type", b""))
            self._stream = content_type.startswith(b"text/event-stream")
            if self._status >= 400 and not content_type.startswith(b"application/json"):
                self._error_text = bytearray()
                return
            if not self._stream:
                await self._send(message)
                return
            await self._send({**message, "headers": [(k, v) for k, v in message["headers"]
                                                     if k.lower() != b"content-length"]})
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if self._error_text is not None:
            self._error_text += chunk
            if not more:
                await send_error(self._send, self._status, self._error_text.decode(errors="replace").strip())
            return
        if self._stream:
            await self._send_events(chunk, more)
            return
        self._buffer += chunk
        await self._send(message)
        if not more:
            self._usage = _usage_of(_json(bytes(self._buffer)))

    async def _send_events(self, chunk: bytes, more: bool) -> None:
        # Engines send one or more whole events per chunk; only the closing usage chunk needs reading,
        # so every other chunk passes through untouched.
        if not self._buffer and chunk.endswith(_EVENT_ENDS) and _USAGE not in chunk:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
            return
        self._buffer += chunk
        out = bytearray()
        while True:
            end = _event_end(self._buffer)
            if end is None:
                break
            event = bytes(self._buffer[:end])
            del self._buffer[:end]
            if self._keep(event):
                out += event
        if not more:
            out += self._buffer
            self._buffer.clear()
        if out or not more:
            await self._send({"type": "http.response.body", "body": bytes(out), "more_body": more})

    def _keep(self, event: bytes) -> bool:
        if _USAGE not in event:
            return True
        data = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
        payload = _json(data)
        usage = _usage_of(payload)
        if usage is None:
            return True
        self._usage = usage
        # The usage chunk we asked for has no choices; one the client asked for stays.
        return not (self._strip_usage_chunk and isinstance(payload, dict) and not payload.get("choices"))


def _event_end(buffer: bytearray) -> int | None:
    for separator in _EVENT_ENDS:
        index = buffer.find(separator)
        if index != -1:
            return index + len(separator)
    return None


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _usage_of(payload: Any) -> tuple[int, int] | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("usage"), dict):
        return None
    usage = payload["usage"]
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


async def _read_body(receive: Receive) -> bytes | None:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > MAX_REQUEST_BYTES:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
