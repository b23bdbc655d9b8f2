"""The local runtime with real processes (and real bubblewrap/slirp4netns where installed).

The containers here run `tests/_fake_container.py`, which speaks the status protocol and serves HTTP
on the container's Unix socket, instead of the real entrypoint.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.exceptions import ContainerError
from shipyard.runtime import ExitInfo, LocalRuntime
from shipyard.runtime._local import container_env, describe_exit
from shipyard.runtime._logs import format_log_line
from shipyard.runtime._sandbox import missing_tools, resolv_conf_override
from shipyard.spec import ContainerSpec, FunctionSpec, Mount

FAKE = str(Path(__file__).with_name("_fake_container.py"))
HAVE_SANDBOX = not missing_tools()
MODES = [False, pytest.param(True, marks=pytest.mark.skipif(not HAVE_SANDBOX, reason="no bwrap/slirp4netns"))]
needs_sandbox = pytest.mark.skipif(not HAVE_SANDBOX, reason="bwrap and slirp4netns are not installed")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) (stdout|stderr)\| (.*)$")


class Harness:
    def __init__(self, root: Path, runtime: LocalRuntime) -> None:
        self.root = root
        self.runtime = runtime
        self.exits: asyncio.Queue[ExitInfo] = asyncio.Queue()
        runtime.set_exit_callback(self.exits.put_nowait)

    def spec(self, cid: str, *, env: dict[str, str] | None = None, startup_timeout: float | None = None,
             mounts: list[Mount] | None = None) -> ContainerSpec:
        return ContainerSpec(
            container_id=cid, app_id="ap-test", app_name="demo", version=1, function_id="fu-test",
            function=FunctionSpec(tag="f", qualname="f", startup_timeout=startup_timeout),
            module_name="app", entry_file="app.py", bundle_dir=str(self.root), python=sys.executable,
            env=env or {}, workdir=str(self.root / "work" / cid),
            socket_path=str(self.root / f"{cid}.sock"), log_path=str(self.root / "logs" / f"{cid}.log"),
            mounts=mounts or [],
        )

    def log_lines(self, cid: str) -> list[str]:
        return (self.root / "logs" / f"{cid}.log").read_text().splitlines()

    async def next_exit(self, limit: float = 10) -> ExitInfo:
        return await asyncio.wait_for(self.exits.get(), limit)


@pytest.fixture(params=MODES, ids=lambda sandboxed: "sandbox" if sandboxed else "plain")
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    runtime = LocalRuntime(tmp_path / "run", sandbox=request.param, entrypoint=[FAKE], close_grace=2)
    yield Harness(tmp_path, runtime)
    await runtime.close()


@pytest.fixture
async def sandboxed(tmp_path: Path) -> AsyncIterator[Harness]:
    if not HAVE_SANDBOX:
        pytest.skip("bwrap and slirp4netns are not installed")
    runtime = LocalRuntime(tmp_path / "run", sandbox=True, entrypoint=[FAKE], close_grace=2)
    yield Harness(tmp_path, runtime)
    await runtime.close()


async def get(socket_path: str, path: str = "/") -> Any:
    transport = httpx.AsyncHTTPTransport(uds=socket_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://container", timeout=10) as client:
        response = await client.get(path)
        response.raise_for_status()
        return response.json()


def processes_matching(predicate: Callable[[bytes], bool]) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if predicate(cmdline):
            found.append(int(proc.name))
    return found


def cmdline_of(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


async def eventually(check: Callable[[], bool], limit: float = 5) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


# -- startup -----------------------------------------------------------------------------------------


async def test_ready_container_serves_http_and_logs(harness: Harness) -> None:
    address = await harness.runtime.start(harness.spec("ct-ok", env={"GREETING": "hi"}), {"MY_SECRET": "s3"})
    assert address == str(harness.root / "ct-ok.sock")
    body = await get(address)
    assert body["secret"] == "s3"
    assert body["env"]["GREETING"] == "hi"
    assert body["env"]["PYTHONUNBUFFERED"] == "1"
    assert body["env"]["TMPDIR"] == str(harness.root / "work" / "ct-ok" / "tmp")
    assert body["cwd"] == str(harness.root / "work" / "ct-ok")
    assert harness.runtime.phases("ct-ok") == [("imports", 0.25), ("enter", 0.5)]
    lines = harness.log_lines("ct-ok")
    assert all(LOG_LINE.match(line) for line in lines), lines
    assert any(line.endswith(" ct-ok stdout| fake container starting ct-ok") for line in lines)
    assert any(line.endswith(" ct-ok stdout| request /") for line in lines)


async def test_secrets_reach_the_environment_only(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_ONLY_CREDENTIAL", "do-not-leak")
    secret = "sekret-value-4711"
    spec = harness.spec("ct-sec")
    address = await harness.runtime.start(spec, {"MY_SECRET": secret})
    body = await get(address)
    assert body["secret"] == secret
    assert "SERVER_ONLY_CREDENTIAL" not in body["env"]
    assert not any(secret in arg for arg in body["cmdline"])
    assert processes_matching(lambda cmdline: secret.encode() in cmdline) == []
    assert secret not in (Path(spec.workdir) / "spec.json").read_text()
    assert secret not in "\n".join(harness.log_lines("ct-sec"))


async def test_failed_container_raises_its_error(harness: Harness) -> None:
    with pytest.raises(ContainerError, match="ValueError: bad app"):
        await harness.runtime.start(harness.spec("ct-fail", env={"FAKE_MODE": "failed"}), {})
    assert harness.runtime.phases("ct-fail") == []
    await asyncio.sleep(0.2)
    assert harness.exits.empty()


async def test_exit_without_status_reports_code_and_stderr(harness: Harness) -> None:
    with pytest.raises(ContainerError) as caught:
        await harness.runtime.start(harness.spec("ct-exit", env={"FAKE_MODE": "exit"}), {})
    assert "exited with code 2 before it was ready" in str(caught.value)
    assert "something went wrong early" in str(caught.value)
    assert harness.exits.empty()


async def test_startup_timeout_kills_the_container(harness: Harness) -> None:
    started = time.monotonic()
    with pytest.raises(ContainerError, match="timed out"):
        await harness.runtime.start(harness.spec("ct-slow", env={"FAKE_MODE": "hang"}, startup_timeout=1), {})
    assert time.monotonic() - started < 5
    assert processes_matching(lambda cmdline: b"ct-slow" in cmdline) == []


async def test_cancelled_start_leaves_nothing_running(harness: Harness) -> None:
    spec = harness.spec("ct-cancel", env={"FAKE_MODE": "hang"})
    task = asyncio.create_task(harness.runtime.start(spec, {}))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert processes_matching(lambda cmdline: b"ct-cancel" in cmdline) == []


# -- after ready ---------------------------------------------------------------------------------------


async def test_crash_after_ready_calls_back_with_reason(harness: Harness) -> None:
    await harness.runtime.start(harness.spec("ct-crash", env={"FAKE_MODE": "crash"}), {})
    info = await harness.next_exit()
    assert info == ExitInfo("ct-crash", 3, "exited with code 3: fatal: boom")
    assert harness.runtime.phases("ct-crash") == []


async def test_graceful_stop_runs_the_sigterm_handler(harness: Harness) -> None:
    await harness.runtime.start(harness.spec("ct-stop"), {})
    started = time.monotonic()
    await harness.runtime.stop("ct-stop", 10)
    assert time.monotonic() - started < 5
    info = await harness.next_exit()
    assert info == ExitInfo("ct-stop", 0, "stopped: exited with code 0")
    text = "\n".join(harness.log_lines("ct-stop"))
    assert "stdout| got SIGTERM, draining" in text
    assert "stdout| drained, bye" in text
    assert not (harness.root / "ct-stop.sock").exists()
    await harness.runtime.stop("ct-stop", 10)  # idempotent


async def test_stop_kills_a_container_that_ignores_sigterm(harness: Harness) -> None:
    await harness.runtime.start(harness.spec("ct-stub", env={"FAKE_IGNORE_TERM": "1"}), {})
    started = time.monotonic()
    await asyncio.gather(harness.runtime.stop("ct-stub", 0.5), harness.runtime.stop("ct-stub", 0.5))
    assert 0.4 < time.monotonic() - started < 5
    info = await harness.next_exit()
    assert info.returncode == -9
    assert info.reason == "stopped: killed by signal SIGKILL after the 0.5 s grace period"
    assert harness.exits.empty()


async def test_processes_started_by_the_container_die_with_it(harness: Harness) -> None:
    address = await harness.runtime.start(harness.spec("ct-tree"), {})
    await get(address, "/spawn")

    def sleepers() -> list[int]:
        return processes_matching(lambda cmdline: b"sleep\x00987654" in cmdline)

    assert await eventually(lambda: len(sleepers()) == 1)
    await harness.runtime.stop("ct-tree", 5)
    assert (await harness.next_exit()).reason == "stopped: exited with code 0"
    assert await eventually(lambda: sleepers() == [])


async def test_close_stops_everything(harness: Harness) -> None:
    await asyncio.gather(*(harness.runtime.start(harness.spec(f"ct-all{i}"), {}) for i in range(2)))
    await harness.runtime.close()
    reasons = sorted([(await harness.next_exit()).container_id for _ in range(2)])
    assert reasons == ["ct-all0", "ct-all1"]
    with pytest.raises(ContainerError, match="shut down"):
        await harness.runtime.start(harness.spec("ct-late"), {})


# -- the sandbox ----------------------------------------------------------------------------------------


async def test_two_sandboxed_containers_bind_the_same_ports(sandboxed: Harness) -> None:
    first, second = await asyncio.gather(
        sandboxed.runtime.start(sandboxed.spec("ct-a"), {}),
        sandboxed.runtime.start(sandboxed.spec("ct-b"), {}),
    )
    assert await get(first, "/bind") == {"loopback": "ok", "any": "ok"}
    assert await get(second, "/bind") == {"loopback": "ok", "any": "ok"}


async def test_sandbox_has_user_mode_outbound_network(sandboxed: Harness) -> None:
    address = await sandboxed.runtime.start(sandboxed.spec("ct-net"), {})
    net = await get(address, "/net")
    assert net["tap0"].startswith("10.0.2.")
    assert net["route"] == "tap0"
    sandbox = sandboxed.runtime._containers["ct-net"].sandbox
    assert sandbox is not None and sandbox.slirp is not None
    slirp = sandbox.slirp.pid
    assert (cmdline_of(slirp) or b"").startswith(b"slirp4netns\x00")
    await sandboxed.runtime.stop("ct-net", 5)
    await sandboxed.next_exit()
    assert cmdline_of(slirp) is None


async def test_sandbox_mounts(sandboxed: Harness) -> None:
    data = sandboxed.root / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello")
    target = sandboxed.root / "mnt"
    spec = sandboxed.spec(
        "ct-mnt", env={"FAKE_MOUNT": str(target)}, mounts=[Mount(source=str(data), target=str(target))]
    )
    body = await get(await sandboxed.runtime.start(spec, {}), "/mount")
    assert body["content"] == "hello"
    assert "Read-only file system" in body["write"]


async def test_sandbox_setup_error_names_the_cause(sandboxed: Harness) -> None:
    mount = Mount(source="/nonexistent/src", target=str(sandboxed.root / "m"))
    spec = sandboxed.spec("ct-bad", mounts=[mount])
    with pytest.raises(ContainerError, match="Can't find source path /nonexistent/src"):
        await sandboxed.runtime.start(spec, {})
    assert sandboxed.exits.empty()


def test_resolv_conf_points_at_slirp_dns_only_for_a_loopback_resolver(tmp_path: Path) -> None:
    host = tmp_path / "etc" / "resolv.conf"
    host.parent.mkdir()
    host.write_text("# stub\nnameserver 127.0.0.53\noptions edns0\n")
    override = resolv_conf_override(tmp_path, host)
    assert override == (tmp_path / "resolv.conf", str(host))
    assert override[0].read_text() == "nameserver 10.0.2.3\n"
    host.write_text("nameserver 10.255.255.53\nnameserver 127.0.0.1\n")
    assert resolv_conf_override(tmp_path / "x", host) is None


def test_sandbox_requested_without_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ContainerError, match="bubblewrap"):
        LocalRuntime(tmp_path, sandbox=True)
    with caplog.at_level(logging.WARNING, logger="shipyard.runtime"):
        assert LocalRuntime(tmp_path, sandbox=None).sandboxed is False
    assert "plain processes" in caplog.text


# -- pure helpers -----------------------------------------------------------------------------------------


def test_log_line_format() -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    assert format_log_line("ct-1", "stderr", "oops", moment) == "2024-05-06T07:08:09.123Z ct-1 stderr| oops\n"


def test_describe_exit() -> None:
    assert describe_exit(1, sandboxed=False) == (1, "exited with code 1")
    assert describe_exit(-15, sandboxed=False) == (-15, "killed by signal SIGTERM")
    assert describe_exit(137, sandboxed=True) == (-9, "killed by signal SIGKILL")
    assert describe_exit(137, sandboxed=False) == (137, "exited with code 137")


def test_container_env_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-only")
    harness = Harness(tmp_path, LocalRuntime(tmp_path, sandbox=False))
    spec = harness.spec("ct-env", env={"PYTHONPATH": "/extra"})
    spec.python_path = ["/bundle", "/lib"]
    env = container_env(spec, {"TOKEN": "t"}, 7)
    assert set(env) == {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "PYTHONUNBUFFERED",
                        "SHIPYARD_STATUS_FD", "TOKEN"}
    assert env["PYTHONPATH"] == "/bundle:/lib:/extra"
    assert env["PATH"].startswith(str(Path(sys.executable).parent) + ":")
    assert env["SHIPYARD_STATUS_FD"] == "7"
