"""`shipyard run`: an ephemeral app that lives while a local entrypoint runs."""

from __future__ import annotations

from tests.conftest import Platform

APP = '''
import httpx
import shipyard

app = shipyard.App("run-demo")


@app.function()
def square(x: int):
    return x * x


@app.function()
@shipyard.fastapi_endpoint()
def hello():
    return "hello from run"


@app.local_entrypoint()
def main(count: int = 2, shout: bool = False):
    print("squares", list(square.map(range(count))))
    url = httpx.URL(hello.get_web_url())
    label = url.host.split(".")[0]
    answer = httpx.get(f"http://127.0.0.1:{url.port}/fn/{label}/").json()
    print("web", answer.upper() if shout else answer)
'''


def test_run_calls_the_local_entrypoint_then_removes_the_app(platform: Platform, app_file) -> None:  # type: ignore[no-untyped-def]
    path = app_file(APP)
    result = platform.cli("run", str(path), "--count", "4", "--shout")
    assert "squares [0, 1, 4, 9]" in result.stdout
    assert "web HELLO FROM RUN" in result.stdout
    assert "run-demo" not in [a["name"] for a in platform.apps() if a["state"] != "stopped"]


def test_run_a_function_by_name_and_bad_targets(platform: Platform, app_file) -> None:  # type: ignore[no-untyped-def]
    path = app_file(APP)
    result = platform.cli("run", f"{path}::square", "--x", "7")
    assert result.stdout.splitlines()[-1] == "49"
    missing = platform.cli("run", f"{path}::nope", check=False)
    assert missing.returncode == 1 and "No local entrypoint or function named 'nope'" in missing.stderr
    unknown = platform.cli("run", str(path), "--colour", "red", check=False)
    assert unknown.returncode == 1 and "Unknown option --colour" in unknown.stderr
    assert "run-demo" not in [a["name"] for a in platform.apps() if a["state"] != "stopped"]


def test_run_calls_its_own_app_when_a_deployed_app_has_the_same_name(platform: Platform,
                                                                     app_file) -> None:  # type: ignore[no-untyped-def]
    deployed = platform.deploy(app_file(APP.replace("return x * x", "return -1")))
    try:
        result = platform.cli("run", str(app_file(APP)), "--count", "3")
        assert "squares [0, 1, 4]" in result.stdout
        with platform.client(deployed["hello"]) as client:
            assert client.get("/").json() == "hello from run"
    finally:
        platform.cli("app", "stop", "run-demo")
