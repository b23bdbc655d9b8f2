"""Prometheus text at /metrics after real requests, and cold start phases in `app logs`."""

from __future__ import annotations

import re
from typing import Any

import httpx

from .conftest import Platform

METRICS_APP = '''
from fastapi import HTTPException
from shipyard import App, fastapi_endpoint

app = App("metered")


@app.function()
@fastapi_endpoint()
def hello(fail: bool = False):
    if fail:
        raise HTTPException(status_code=418, detail="teapot")
    return "hi"
'''


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample; labels must match exactly those given (in any order)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if found == labels:
            return float(match.group(2))
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_metrics_after_requests(platform: Platform, app_file: Any) -> None:
    urls = platform.deploy(app_file(METRICS_APP))
    with platform.client(urls["hello"], timeout=60) as client:
        for _ in range(3):
            assert client.get("/").status_code == 200
        assert client.get("/", params={"fail": "true"}).status_code == 418
    response = httpx.get(f"{platform.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    fn = {"app": "metered", "function": "hello"}
    assert sample(text, "shipyard_requests_total", **fn, status="200") == 3
    assert sample(text, "shipyard_requests_total", **fn, status="418") == 1
    assert sample(text, "shipyard_request_duration_seconds_count", **fn) == 4
    assert sample(text, "shipyard_requests_in_flight", **fn) == 0
    assert sample(text, "shipyard_queue_depth", **fn) == 0
    assert sample(text, "shipyard_containers", **fn, state="idle") == 1
    assert sample(text, "shipyard_containers", **fn, state="starting") == 0
    # The first request waited for the cold start.
    assert sample(text, "shipyard_queue_wait_seconds_count", **fn) == 1
    assert sample(text, "shipyard_cold_starts_total", **fn) == 1
    assert sample(text, "shipyard_cold_start_duration_seconds_count", **fn) == 1
    for phase in ("spawn", "imports", "app_start"):
        assert sample(text, "shipyard_cold_start_phase_seconds_count", **fn, phase=phase) == 1

    logs = platform.cli("app", "logs", "metered").stdout
    phases = r"ready in [\d.]+ s \(cold start: spawn [\d.]+ s, (spare [\d.]+ s, )?imports [\d.]+ s"
    assert re.search(phases, logs), logs
