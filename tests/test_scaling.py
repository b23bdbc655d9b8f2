"""Scaling behaviour over real processes: from zero, to zero, queueing, concurrency, crashes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from .conftest import Platform

INSTANCE_APP = '''
import os, time, uuid, threading
from shipyard import App, fastapi_endpoint, concurrent

app = App("{name}")
INSTANCE = uuid.uuid4().hex
_lock = threading.Lock()
_state = {{"in_flight": 0, "peak": 0}}


@app.function(scaledown_window={scaledown}, max_containers={max_containers})
@concurrent(max_inputs={max_inputs})
@fastapi_endpoint()
async def work(sleep: float = 0.0, crash: bool = False):
    import asyncio
    if crash:
        os._exit(3)
    with _lock:
        _state["in_flight"] += 1
        _state["peak"] = max(_state["peak"], _state["in_flight"])
    await asyncio.sleep(sleep)
    with _lock:
        _state["in_flight"] -= 1
    return {{"instance": INSTANCE, "peak": _state["peak"]}}
'''


def write_app(app_file: Any, name: str, *, scaledown: float = 60, max_containers: int = 10,
              max_inputs: int = 1) -> Path:
    path: Path = app_file(INSTANCE_APP.format(name=name, scaledown=scaledown,
                                              max_containers=max_containers, max_inputs=max_inputs))
    return path


def containers(platform: Platform, name: str) -> int:
    for app in platform.apps():
        if app["name"] == name and app["state"] != "stopped":
            return int(app["containers"])  # type: ignore[call-overload]
    raise AssertionError(f"app {name} not listed")


def wait_until(predicate: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(message)


def test_scale_from_zero_reuse_and_scale_to_zero(runtime_platform: Platform, app_file: Any) -> None:
    urls = runtime_platform.deploy(write_app(app_file, "zero", scaledown=2))
    assert containers(runtime_platform, "zero") == 0
    with runtime_platform.client(urls["work"], timeout=60) as client:
        first = client.get("/").json()
        second = client.get("/").json()
    assert first["instance"] == second["instance"]
    assert containers(runtime_platform, "zero") == 1
    wait_until(lambda: containers(runtime_platform, "zero") == 0, 20, "the idle container was not stopped")
    with runtime_platform.client(urls["work"], timeout=60) as client:
        third = client.get("/").json()
    assert third["instance"] != first["instance"]


def test_max_containers_queues_requests(runtime_platform: Platform, app_file: Any) -> None:
    urls = runtime_platform.deploy(write_app(app_file, "queued", max_containers=1))
    with runtime_platform.client(urls["work"], timeout=60) as client:
        client.get("/")  # warm: one container
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: client.get("/", params={"sleep": 0.5}), range(4)))
    assert [r.status_code for r in results] == [200] * 4
    bodies = [r.json() for r in results]
    assert len({b["instance"] for b in bodies}) == 1
    assert max(b["peak"] for b in bodies) == 1
    assert containers(runtime_platform, "queued") == 1


def test_concurrent_inputs_share_one_container(platform: Platform, app_file: Any) -> None:
    urls = platform.deploy(write_app(app_file, "concurrent", max_containers=1, max_inputs=4))
    with platform.client(urls["work"], timeout=60) as client:
        client.get("/")
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: client.get("/", params={"sleep": 1.0}), range(4)))
    bodies = [r.json() for r in results]
    assert len({b["instance"] for b in bodies}) == 1
    assert max(b["peak"] for b in bodies) >= 3


def test_more_containers_start_under_load(platform: Platform, app_file: Any) -> None:
    urls = platform.deploy(write_app(app_file, "burst", max_containers=3))
    with platform.client(urls["work"], timeout=60) as client, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: client.get("/", params={"sleep": 1.5}), range(6)))
    assert all(r.status_code == 200 for r in results)
    instances = {r.json()["instance"] for r in results}
    assert 2 <= len(instances) <= 3
    assert containers(platform, "burst") <= 3


def test_crashed_container_is_replaced(runtime_platform: Platform, app_file: Any) -> None:
    urls = runtime_platform.deploy(write_app(app_file, "crashy"))
    with runtime_platform.client(urls["work"], timeout=60) as client:
        before = client.get("/").json()
        crashed = client.get("/", params={"crash": True})
        after = client.get("/")
    assert crashed.status_code == 502
    assert "crashed" in crashed.text and "code 3" in crashed.text
    assert after.status_code == 200
    assert after.json()["instance"] != before["instance"]
    logs = runtime_platform.cli("app", "logs", "crashy").stdout
    assert "exited unexpectedly" in logs


def test_redeploy_under_load_fails_no_request(platform: Platform, app_file: Any) -> None:
    source = '''
from shipyard import App, fastapi_endpoint, concurrent
app = App("rolling")
@app.function()
@concurrent(max_inputs=8)
@fastapi_endpoint()
def version():
    return "VERSION"
'''
    path = app_file(source.replace("VERSION", "v1"))
    urls = platform.deploy(path)
    statuses: list[int] = []
    seen: set[str] = set()
    stop_at = [float("inf")]

    def hammer() -> None:
        with platform.client(urls["version"], timeout=60) as client:
            while time.monotonic() < stop_at[0]:
                response = client.get("/")
                statuses.append(response.status_code)
                if response.status_code == 200:
                    seen.add(response.json())
                time.sleep(0.01)  # stay under the workspace rate limit (200 requests/s)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(hammer) for _ in range(2)]
        wait_until(lambda: "v1" in seen, 30, "v1 never answered")
        for version in ("v2", "v3"):
            path.write_text(source.replace("VERSION", version))
            platform.deploy(path)
            wait_until(lambda v=version: v in seen, 30, f"{version} never answered")  # type: ignore[misc]
        stop_at[0] = time.monotonic() + 0.5
        for future in futures:
            future.result()
    assert statuses and set(statuses) == {200}, f"failed requests: {[s for s in statuses if s != 200]}"


def test_apps_serve_again_after_server_restart(own_platform: Platform, app_file: Any) -> None:
    urls = own_platform.deploy(write_app(app_file, "durable"))
    with own_platform.client(urls["work"], timeout=60) as client:
        assert client.get("/").status_code == 200
    own_platform.stop()
    own_platform.start()
    with own_platform.client(urls["work"], timeout=60) as client:
        assert client.get("/").status_code == 200
    assert [a["name"] for a in own_platform.apps()] == ["durable"]


def test_unknown_host_and_stopped_app(platform: Platform, app_file: Any) -> None:
    urls = platform.deploy(write_app(app_file, "stoppable"))
    with platform.client("http://shipyard--nothing-here.localhost") as client:
        unknown = client.get("/")
    assert unknown.status_code == 404
    assert "nothing-here" in unknown.text
    platform.cli("app", "stop", "stoppable")
    with platform.client(urls["work"], timeout=10) as client:
        stopped = client.get("/")
    assert stopped.status_code == 404
    assert "stopped" in stopped.text
    assert httpx.get(f"{platform.url}/api/health").json()["ok"] is True
