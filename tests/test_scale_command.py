"""`shipyard app scale` on a running app, and draining: scale-down and redeploy under load lose nothing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .conftest import Platform
from .test_scaling import containers, wait_until

SCALED_APP = '''
import asyncio, uuid
from shipyard import App, fastapi_endpoint, concurrent

app = App("scaled")
INSTANCE = uuid.uuid4().hex


@app.function(scaledown_window=1)
@concurrent(max_inputs=10)
@fastapi_endpoint()
async def work(sleep: float = 0.0):
    await asyncio.sleep(sleep)
    return INSTANCE
'''


def test_scale_changes_a_running_function_and_draining_loses_nothing(
    own_platform: Platform, app_file: Any
) -> None:
    path = app_file(SCALED_APP)
    urls = own_platform.deploy(path)
    assert containers(own_platform, "scaled") == 0

    out = own_platform.cli("app", "scale", "scaled", "work", "--min", "3").stdout
    assert "min 3" in out
    wait_until(lambda: containers(own_platform, "scaled") == 3, 60, "min_containers=3 did not start 3")

    statuses: list[int] = []
    instances: set[str] = set()
    stop_at = [float("inf")]

    def hammer() -> None:
        with own_platform.client(urls["work"], timeout=60) as client:
            while time.monotonic() < stop_at[0]:
                response = client.get("/", params={"sleep": 0.2})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    instances.add(response.json())

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(hammer) for _ in range(3)]
        try:
            time.sleep(1.0)
            # Three requests in flight need one container of 10 slots: two get drained and stopped.
            own_platform.cli("app", "scale", "scaled", "work", "--min", "0")
            wait_until(lambda: containers(own_platform, "scaled") == 1, 30, "no scale-down under load")
        finally:
            stop_at[0] = time.monotonic() + 0.5
        for future in futures:
            future.result()
    assert statuses and set(statuses) == {200}, f"failed: {[s for s in statuses if s != 200]}"

    # Requests in flight on containers that a redeploy retires finish on those containers.
    with own_platform.client(urls["work"], timeout=60) as client, ThreadPoolExecutor(4) as pool:
        before = client.get("/").json()
        slow = [pool.submit(client.get, "/", params={"sleep": 1.5}) for _ in range(4)]
        time.sleep(0.3)
        own_platform.deploy(path)
        results = [future.result() for future in slow]
        assert [r.status_code for r in results] == [200] * 4
        assert {r.json() for r in results} == {before}
        wait_until(lambda: client.get("/").json() != before, 30, "the new version never answered")


def test_scale_persists_across_restart_and_rejects_bad_input(own_platform: Platform, app_file: Any) -> None:
    own_platform.deploy(app_file(SCALED_APP))
    own_platform.cli("app", "scale", "scaled", "work", "--min", "1", "--max", "4", "--buffer", "0",
                     "--scaledown-window", "30")
    wait_until(lambda: containers(own_platform, "scaled") == 1, 60, "min_containers=1 did not start one")
    own_platform.stop()
    own_platform.start()
    wait_until(lambda: containers(own_platform, "scaled") == 1, 60, "the scaling change did not survive")

    missing = own_platform.cli("app", "scale", "scaled", "nope", "--min", "1", check=False)
    assert missing.returncode != 0 and "no function 'nope'" in missing.stderr
    inverted = own_platform.cli("app", "scale", "scaled", "work", "--min", "5", check=False)
    assert inverted.returncode != 0 and "max_containers must be" in inverted.stderr
    nothing = own_platform.cli("app", "scale", "scaled", "work", check=False)
    assert nothing.returncode != 0 and "at least one of" in nothing.stderr
    response = own_platform.api("POST", "/api/apps/scaled/functions/work/scale", json={"max_containers": 2})
    assert response.status_code == 200 and response.json()["max_containers"] == 2
