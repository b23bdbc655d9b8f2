"""The endpoint gateway in front of the proxy: allowed routes, usage metering, error envelopes (ASGI)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from shipyard.endpoints import EndpointGateway, GatewayRoute

CHUNK: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": "hi"}}]}
USAGE_CHUNK: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}


class Upstream:
    """Stands in for the proxy: records what it got, answers like an OpenAI engine or the proxy."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        body = json.loads(message["body"]) if message.get("body") else {}
        self.bodies.append(body)
        if body.get("unauthorized"):
            text = b"Missing or invalid proxy token.\n"
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": text})
            return
        if body.get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            events: list[dict[str, Any]] = [CHUNK, CHUNK]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append(USAGE_CHUNK)
            payload = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
            payload += b"data: [DONE]\n\n"
            # Split mid-event to check that events are re-assembled.
            for piece in (payload[:10], payload[10:70], payload[70:]):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        answer = json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def _target(scope: Scope) -> tuple[str | None, str]:
    path: str = scope["path"]
    if path.startswith("/fn/"):
        label, _, rest = path[4:].partition("/")
        return label, "/" + rest
    return None, path


def _client() -> tuple[httpx.AsyncClient, Upstream, list[tuple[str, int, int]]]:
    upstream = Upstream()
    usage: list[tuple[str, int, int]] = []
    gateway = EndpointGateway(upstream, target=_target, sink=lambda e, i, o: usage.append((e, i, o)))
    gateway.routes["ws--ep"] = GatewayRoute("ep-1")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://t")
    return client, upstream, usage


def _events(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


async def test_stream_usage_is_requested_and_stripped_when_the_client_did_not_ask() -> None:
    client, upstream, usage = _client()
    async with client:
        response = await client.post("/fn/ws--ep/v1/chat/completions", json={"stream": True, "messages": []})
    assert response.status_code == 200
    assert upstream.bodies[-1]["stream_options"] == {"include_usage": True}
    assert _events(response.text) == [CHUNK, CHUNK]
    assert response.text.endswith("data: [DONE]\n\n")
    assert usage == [("ep-1", 7, 2)]


async def test_stream_usage_stays_when_the_client_asked() -> None:
    client, _upstream, usage = _client()
    async with client:
        response = await client.post("/fn/ws--ep/v1/chat/completions",
                                     json={"stream": True, "stream_options": {"include_usage": True}})
    assert _events(response.text) == [CHUNK, CHUNK, USAGE_CHUNK]
    assert usage == [("ep-1", 7, 2)]


async def test_plain_completion_usage_and_other_traffic() -> None:
    client, upstream, usage = _client()
    async with client:
        response = await client.post("/fn/ws--ep/v1/completions", json={"prompt": "x"})
        assert response.json()["usage"]["prompt_tokens"] == 5
        assert usage == [("ep-1", 5, 3)]
        # Other host labels pass through untouched.
        await client.post("/fn/other/anything", json={"stream": True})
        assert "stream_options" not in upstream.bodies[-1]


async def test_only_openai_routes_and_error_envelopes() -> None:
    client, upstream, usage = _client()
    async with client:
        response = await client.get("/fn/ws--ep/docs")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "not_found"
        assert "/v1/chat/completions" in error["message"]
        assert len(upstream.bodies) == 0
        response = await client.post("/fn/ws--ep/v1/chat/completions", json={"unauthorized": True})
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "Missing or invalid proxy token.",
                                             "type": "invalid_request_error", "param": None,
                                             "code": "invalid_api_key"}}
    assert usage == []


async def test_whole_event_chunks_pass_through_untouched_until_the_usage_chunk() -> None:
    """sse-starlette's framing (CRLF): one event per chunk; only chunks naming usage are read."""
    events = [b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in (CHUNK, CHUNK, USAGE_CHUNK)]
    sent: list[bytes] = []

    async def engine(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        for event in [*events, b"data: [DONE]\r\n\r\n"]:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def client_side(message: Any) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    usage: list[tuple[str, int, int]] = []
    gateway = EndpointGateway(engine, target=_target, sink=lambda e, i, o: usage.append((e, i, o)))
    gateway.routes["ws--ep"] = GatewayRoute("ep-1")
    body = json.dumps({"stream": True}).encode()
    scope = {"type": "http", "method": "POST", "path": "/fn/ws--ep/v1/chat/completions", "headers": []}

    async def receive() -> Any:
        return {"type": "http.request", "body": body, "more_body": False}

    await gateway(scope, receive, client_side)
    assert sent[:2] == events[:2] and sent[0] is events[0]
    assert b"usage" not in b"".join(sent) and b"".join(sent).endswith(b"data: [DONE]\r\n\r\n")
    assert usage == [("ep-1", 7, 2)]
