"""Calling functions from Python through a real server: remote, spawn, map, remote_gen, FunctionCall."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import Platform

APP = '''
import time
from pathlib import Path

import shipyard
from fastapi.responses import JSONResponse, StreamingResponse

app = shipyard.App("calls")
other_image = shipyard.Image.debian_slim().pip_install("jmespath")


class Boom(Exception):
    pass


@app.function()
def square(x):
    return x * x


def _inner(message):
    raise Boom(message)


@app.function()
def fail(message):
    _inner(message)


@app.function()
def count(n):
    for i in range(n):
        yield i


@app.function(max_containers=4)
def slow_increment(x):
    time.sleep(0.02)
    return x + 1


@app.function()
def job(flag, value):
    while not Path(flag).exists():
        time.sleep(0.05)
    return value * 10


@app.function(image=other_image)
def jmespath_version():
    import jmespath
    return jmespath.__version__


@app.function(retries=shipyard.Retries(max_retries=2, initial_delay=0.0), timeout=60)
def flaky(counter):
    path = Path(counter)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@app.function(timeout=1)
def sleeper():
    time.sleep(5)


@app.cls()
class Counter:
    @shipyard.enter()
    def setup(self):
        self.base = 100

    @shipyard.method()
    def add(self, x):
        return self.base + x


@app.function()
@shipyard.fastapi_endpoint(method="POST")
def start(flag: str, value: int):
    return {"call_id": job.spawn(flag, value).object_id}


@app.function()
@shipyard.fastapi_endpoint()
def result(call_id: str):
    try:
        value = shipyard.FunctionCall.from_id(call_id).get(timeout=0)
    except TimeoutError:
        return JSONResponse({"status": "pending"}, status_code=202)
    return {"result": value}


@app.function()
@shipyard.fastapi_endpoint()
def stream_gen(n: int):
    return StreamingResponse((f"{i}\\n" for i in count.remote_gen(n)), media_type="text/plain")


@app.function()
@shipyard.fastapi_endpoint()
def stream_map(n: int):
    return StreamingResponse((f"{r}\\n" for r in square.map(range(n))), media_type="text/plain")


@app.function()
@shipyard.fastapi_endpoint()
def other_image_version():
    import importlib.util
    return {"version": jmespath_version.remote(), "here": importlib.util.find_spec("jmespath") is not None}


@app.function()
@shipyard.fastapi_endpoint()
def web_remote():
    return "web"
'''


def run_client(platform: Platform, code: str, *, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run client code in a plain Python process that finds the server through SHIPYARD_HOME."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**platform.env, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


def client_ok(platform: Platform, code: str) -> str:
    result = run_client(platform, code)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def calls_app(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("calls_app")
    path = folder / "calls_app.py"
    path.write_text(APP)
    return platform.deploy(path)


def test_remote_from_a_plain_python_process(platform: Platform, calls_app: dict[str, str]) -> None:
    out = client_ok(platform, """
        import shipyard
        square = shipyard.Function.from_name("calls", "square")
        print(square.remote(7), square.remote(x=8))
        counter = shipyard.Cls.from_name("calls", "Counter")()
        print(counter.add.remote(5))
    """)
    assert out.split() == ["49", "64", "105"]


def test_remote_exception_carries_the_remote_traceback(platform: Platform, calls_app: dict[str, str]) -> None:
    out = client_ok(platform, """
        import shipyard
        try:
            shipyard.Function.from_name("calls", "fail").remote("it broke")
        except Exception as exc:
            print(type(exc).__name__, exc)
            print("\\n".join(getattr(exc, "__notes__", [])))
    """)
    assert out.startswith("Boom it broke")
    assert "Remote traceback (calls.fail)" in out
    assert "_inner(message)" in out and "raise Boom(message)" in out


def test_map_200_inputs_with_max_containers_4(platform: Platform, calls_app: dict[str, str]) -> None:
    out = client_ok(platform, """
        import shipyard
        results = list(shipyard.Function.from_name("calls", "slow_increment").map(range(200)))
        assert results == list(range(1, 201)), results
        unordered = list(shipyard.Function.from_name("calls", "slow_increment").map(range(20),
                                                                                      order_outputs=False))
        assert sorted(unordered) == list(range(1, 21))
        print("ok")
    """)
    assert out.strip() == "ok"
    logs = platform.cli("app", "logs", "calls").stdout
    started = {line.split("starting container ")[1].split()[0] for line in logs.splitlines()
               if "starting container " in line and line.endswith(" for slow_increment")}
    assert 1 <= len(started) <= 4, started


def test_map_return_exceptions_and_starmap(platform: Platform, calls_app: dict[str, str]) -> None:
    out = client_ok(platform, """
        import shipyard
        fail = shipyard.Function.from_name("calls", "fail")
        results = list(fail.map(["a", "b"], return_exceptions=True))
        print([type(r).__name__ for r in results], [str(r) for r in results])
        print(list(shipyard.Function.from_name("calls", "square").starmap([(2,), (3,)])))
    """)
    lines = out.splitlines()
    assert lines[0] == "['Boom', 'Boom'] ['a', 'b']"
    assert lines[1] == "[4, 9]"


def test_remote_gen_and_spawn_from_a_client(platform: Platform, calls_app: dict[str, str]) -> None:
    out = client_ok(platform, """
        import shipyard
        print(list(shipyard.Function.from_name("calls", "count").remote_gen(4)))
        call = shipyard.Function.from_name("calls", "square").spawn(12)
        print(call.object_id.startswith("fc-"), shipyard.FunctionCall.from_id(call.object_id).get(timeout=60))
    """)
    assert out.splitlines() == ["[0, 1, 2, 3]", "True 144"]


def test_web_endpoint_spawns_and_another_polls(platform: Platform, calls_app: dict[str, str],
                                               tmp_path: Path) -> None:
    flag = tmp_path / "release"
    with platform.client(calls_app["start"], timeout=60) as start:
        call_id = start.post("/", params={"flag": str(flag), "value": 4}).json()["call_id"]
    assert call_id.startswith("fc-")
    with platform.client(calls_app["result"], timeout=60) as poll:
        pending = poll.get("/", params={"call_id": call_id})
        assert pending.status_code == 202, pending.text
        assert pending.json() == {"status": "pending"}
        flag.write_text("go")
        deadline = time.monotonic() + 30
        while True:
            answer = poll.get("/", params={"call_id": call_id})
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"result": 40}


def test_streaming_responses_fed_by_remote_gen_and_map(platform: Platform, calls_app: dict[str, str]) -> None:
    with platform.client(calls_app["stream_gen"], timeout=60) as client:
        assert client.get("/", params={"n": 5}).text.split() == ["0", "1", "2", "3", "4"]
    with platform.client(calls_app["stream_map"], timeout=60) as client:
        assert client.get("/", params={"n": 6}).text.split() == ["0", "1", "4", "9", "16", "25"]


def test_web_function_calls_a_function_with_another_image(platform: Platform,
                                                          calls_app: dict[str, str]) -> None:
    with platform.client(calls_app["other_image_version"], timeout=120) as client:
        body = client.get("/").json()
    assert body["here"] is False
    assert body["version"].count(".") >= 1


def test_retries_and_timeout(platform: Platform, calls_app: dict[str, str], tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    out = client_ok(platform, f"""
        import shipyard
        print(shipyard.Function.from_name("calls", "flaky").remote({str(counter)!r}))
        try:
            shipyard.Function.from_name("calls", "sleeper").remote()
        except shipyard.FunctionTimeoutError as exc:
            print("timeout", isinstance(exc, TimeoutError), exc)
    """)
    lines = out.splitlines()
    assert lines[0] == "3"
    assert lines[1].startswith("timeout True Function 'calls.sleeper' timed out after 1 s")


def test_web_functions_refuse_remote(platform: Platform, calls_app: dict[str, str]) -> None:
    out = client_ok(platform, """
        import shipyard
        web = shipyard.Function.from_name("calls", "web_remote")
        try:
            web.remote()
        except shipyard.InvalidError as exc:
            print(exc)
        print(web.get_web_url())
    """)
    message, url = out.splitlines()
    assert "web function" in message and calls_app["web_remote"] in message
    assert url == calls_app["web_remote"]


def test_not_found_and_unpicklable_arguments(platform: Platform, calls_app: dict[str, str]) -> None:
    out = client_ok(platform, """
        import threading
        import shipyard
        for app_name, tag in (("no-such-app", "f"), ("calls", "no_such_function")):
            try:
                shipyard.Function.from_name(app_name, tag).remote(1)
            except shipyard.NotFoundError as exc:
                print("NotFound:", exc)
    """)
    lines = out.splitlines()
    assert lines[0].startswith("NotFound: App 'no-such-app' not found")
    assert lines[1].startswith("NotFound: Function 'no_such_function' not found in app 'calls'")
    # Pickling fails before any request: with no server at all, the error is still about the argument.
    dead = run_client(platform, """
        import threading
        import shipyard
        try:
            shipyard.Function.from_name("calls", "square").remote(threading.Lock())
        except shipyard.InvalidError as exc:
            print(exc)
    """, env={"SHIPYARD_SERVER_URL": "http://127.0.0.1:9"})
    assert dead.returncode == 0, dead.stderr
    assert "cannot be pickled" in dead.stdout and "Nothing was sent" in dead.stdout
