"""Proxy limits over a real server: rate limit (429), queue bound (503), body cap (413), timeout (504)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shipyard.proxy import ProxyLimits
from shipyard.proxy._limits import RateLimiter, TokenBucket

from .conftest import Platform, free_port

RATE = 20
MAX_BODY = 1000
LIMITS_APP = '''
import asyncio
from fastapi import Request
from fastapi.responses import StreamingResponse
from shipyard import App, fastapi_endpoint

app = App("limits")


@app.function(timeout=1, max_containers=1)
@fastapi_endpoint()
async def slow(sleep: float = 0.0):
    await asyncio.sleep(sleep)
    return {"slept": sleep}


@app.function(timeout=1, max_containers=1)
@fastapi_endpoint()
async def trickle():
    async def chunks():
        for _ in range(15):
            yield b"x"
            await asyncio.sleep(0.2)
    return StreamingResponse(chunks())


@app.function(max_containers=1)
@fastapi_endpoint(method="POST")
async def upload(request: Request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"bytes": size}
'''


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, dict[str, str]]]:
    home = tmp_path_factory.mktemp("limits-home")
    server = Platform(
        home=home,
        port=free_port(),
        server_args=("--rate-limit", str(RATE), "--rate-burst", "1", "--max-queue", "1",
                     "--max-body", str(MAX_BODY)),
    )
    server.start()
    source = home.parent / "limits-src"
    source.mkdir(exist_ok=True)
    (source / "app.py").write_text(LIMITS_APP)
    try:
        yield server, server.deploy(source / "app.py")
    finally:
        server.stop()


def test_token_bucket_refills_at_rate_up_to_capacity() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, capacity=4.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [0.0] * 4
    assert bucket.take() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.take() == 0.0
    now[0] = 100.0  # a long quiet period refills only up to the burst capacity
    assert sum(bucket.take() == 0.0 for _ in range(10)) == 4


def test_rate_limiter_retry_after_is_whole_seconds_and_zero_rate_disables() -> None:
    now = [0.0]
    limiter = RateLimiter(ProxyLimits(rate_per_second=0.25, burst_seconds=4), clock=lambda: now[0])
    assert limiter.retry_after() is None
    assert limiter.retry_after() == 4
    unlimited = RateLimiter(ProxyLimits(rate_per_second=0))
    assert all(unlimited.retry_after() is None for _ in range(1000))


def test_rate_limit_answers_429_with_retry_after(limited: tuple[Platform, dict[str, str]]) -> None:
    server, urls = limited
    with server.client(urls["slow"], timeout=60) as client:
        client.get("/")  # cold start outside the burst
        time.sleep(1.2)  # bucket full again: RATE tokens
        responses = [client.get("/") for _ in range(3 * RATE)]
    time.sleep(1.2)  # leave a full bucket to the other tests
    refused = [r for r in responses if r.status_code == 429]
    assert all(r.status_code in (200, 429) for r in responses)
    assert RATE <= len(responses) - len(refused) <= 2 * RATE
    assert refused, "no request was rate limited"
    assert int(refused[0].headers["retry-after"]) >= 1
    assert "Too many requests" in refused[0].text


def test_full_queue_answers_503_with_retry_after(limited: tuple[Platform, dict[str, str]]) -> None:
    server, urls = limited
    with server.client(urls["slow"], timeout=60) as client, ThreadPoolExecutor(2) as pool:
        assert client.get("/").status_code == 200  # warm: the one container is ready
        busy = pool.submit(client.get, "/", params={"sleep": 0.8})
        time.sleep(0.3)
        queued = pool.submit(client.get, "/")
        time.sleep(0.2)
        overflow = client.get("/")
        assert busy.result().status_code == 200
        assert queued.result().status_code == 200
    assert overflow.status_code == 503, overflow.text
    assert overflow.headers["retry-after"] == "1"
    assert "queue is full" in overflow.text


def test_function_timeout_is_a_deadline_for_the_whole_request(
    limited: tuple[Platform, dict[str, str]],
) -> None:
    server, urls = limited
    with server.client(urls["slow"], timeout=60) as client:
        client.get("/")
        started = time.monotonic()
        response = client.get("/", params={"sleep": 3})
        assert time.monotonic() - started < 2.5
    assert response.status_code == 504
    assert "timed out" in response.text and "timeout of 1 s" in response.text
    # A response that keeps trickling (each read well within 1 s) is still cut at the deadline.
    with server.client(urls["trickle"], timeout=60) as client:
        with client.stream("GET", "/") as response:  # the cold start happens before the deadline starts
            assert response.status_code == 200
            started = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):
                response.read()
        assert time.monotonic() - started < 1.5


def test_body_cap_answers_413(limited: tuple[Platform, dict[str, str]]) -> None:
    server, urls = limited
    with server.client(urls["upload"], timeout=60) as client:
        assert client.post("/", content=b"a" * 500).json() == {"bytes": 500}
        declared = client.post("/", content=b"a" * (MAX_BODY + 1))
        assert declared.status_code == 413
        assert f"limit of {MAX_BODY} bytes" in declared.text

        def chunked() -> Iterator[bytes]:
            for _ in range(10):
                yield b"b" * 300

        streamed = client.post("/", content=chunked())
        assert streamed.status_code == 413, streamed.text
        assert client.post("/", content=iter([b"c" * 400, b"c" * 400])).json() == {"bytes": 800}
