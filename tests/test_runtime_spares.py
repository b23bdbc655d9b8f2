"""Spare containers: the local runtime with the real container entrypoint and `spares=True`.

A cold start after the first takes the spare started for the interpreter: it says so in its phases,
gets only its own secrets and writes to its own log.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard.runtime import LocalRuntime
from shipyard.spec import ContainerSpec, FunctionSpec, Mount, WebConfig, WebKind
from tests.test_runtime_local import MODES, get, processes_matching

APP = textwrap.dedent('''
    import os
    from shipyard import App, fastapi_endpoint

    app = App("spares")
    print("app imported", flush=True)

    @app.function()
    @fastapi_endpoint()
    def env() -> dict:
        return {
            "secrets": {k: v for k, v in os.environ.items() if k.startswith("SECRET_")},
            "cwd": os.getcwd(),
            "tmpdir": os.environ.get("TMPDIR"),
            "answer": os.environ.get("ANSWER"),
        }
''')
REFILL_WAIT = 0.8
"""A little longer than the runtime waits before it starts the next spare."""


@pytest.fixture(params=MODES, ids=lambda sandboxed: "sandbox" if sandboxed else "plain")
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "app.py").write_text(APP)
    runtime = LocalRuntime(tmp_path / "run", sandbox=request.param, spares=True, close_grace=2)
    yield runtime
    await runtime.close()


def spec(root: Path, cid: str, mounts: list[Mount] | None = None) -> ContainerSpec:
    return ContainerSpec(
        container_id=cid, app_id="ap-spares", app_name="spares", version=1, function_id="fu-spares",
        function=FunctionSpec(tag="env", qualname="env", web=WebConfig(kind=WebKind.FASTAPI_ENDPOINT)),
        module_name="app", entry_file="app.py", bundle_dir=str(root / "bundle"), python=sys.executable,
        env={"ANSWER": "42"}, workdir=str(root / "work" / cid), socket_path=str(root / f"{cid}.sock"),
        log_path=str(root / "logs" / f"{cid}.log"), mounts=mounts or [],
    )


async def test_second_cold_start_takes_the_spare_with_its_own_secrets(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    first = await runtime.start(spec(tmp_path, "ct-first"), {"SECRET_A": "a"})
    assert "spare" not in dict(runtime.phases("ct-first"))
    await asyncio.sleep(REFILL_WAIT)
    second = await runtime.start(spec(tmp_path, "ct-second"), {"SECRET_B": "b"})
    assert "spare" in dict(runtime.phases("ct-second"))
    await asyncio.sleep(REFILL_WAIT)
    third = await runtime.start(spec(tmp_path, "ct-third"), {})
    assert "spare" in dict(runtime.phases("ct-third"))

    assert (await get(first))["secrets"] == {"SECRET_A": "a"}
    got = await get(second)
    assert got["secrets"] == {"SECRET_B": "b"}
    assert got["answer"] == "42"
    assert got["cwd"] == str(tmp_path / "bundle")
    assert got["tmpdir"] == str(tmp_path / "work" / "ct-second" / "tmp")
    assert (await get(third))["secrets"] == {}
    # The spare's output goes to the log of the container it became, under that container's id.
    log = (tmp_path / "logs" / "ct-second.log").read_text()
    assert "ct-second stdout| app imported" in log
    assert "SECRET_B" not in log


async def test_containers_with_mounts_start_fresh(runtime: LocalRuntime, tmp_path: Path) -> None:
    if not runtime.sandboxed:
        pytest.skip("mounts need the sandbox")
    await runtime.start(spec(tmp_path, "ct-first"), {})
    await asyncio.sleep(REFILL_WAIT)
    (tmp_path / "data").mkdir()
    mounted = spec(tmp_path, "ct-mounted", [Mount(source=str(tmp_path / "data"), target="/mnt/data")])
    await runtime.start(mounted, {})
    assert "spare" not in dict(runtime.phases("ct-mounted"))
    await runtime.start(spec(tmp_path, "ct-plain"), {})
    assert "spare" in dict(runtime.phases("ct-plain"))


def spares_under(root: Path) -> list[int]:
    def cwd_under_root(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/cwd").readlink().is_relative_to(root)
        except OSError:
            return False

    return [pid for pid in processes_matching(lambda cmdline: b"--spare" in cmdline.split(b"\0"))
            if cwd_under_root(pid)]


async def test_close_kills_the_spare(runtime: LocalRuntime, tmp_path: Path) -> None:
    await runtime.start(spec(tmp_path, "ct-first"), {})
    await asyncio.sleep(REFILL_WAIT)
    assert spares_under(tmp_path)
    await runtime.close()
    assert runtime.container_ids() == []
    assert spares_under(tmp_path) == []


async def test_without_spares_every_container_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "app.py").write_text(APP)
    runtime = LocalRuntime(tmp_path / "run", sandbox=False, close_grace=2)
    try:
        await runtime.start(spec(tmp_path, "ct-first"), {})
        await asyncio.sleep(REFILL_WAIT)
        await runtime.start(spec(tmp_path, "ct-second"), {})
        assert "spare" not in dict(runtime.phases("ct-second"))
        assert spares_under(tmp_path) == []
    finally:
        await runtime.close()


async def test_startup_variables_need_a_fresh_interpreter(runtime: LocalRuntime, tmp_path: Path) -> None:
    await runtime.start(spec(tmp_path, "ct-first"), {})
    await asyncio.sleep(REFILL_WAIT)
    await runtime.start(spec(tmp_path, "ct-hashseed"), {"PYTHONHASHSEED": "0"})
    assert "spare" not in dict(runtime.phases("ct-hashseed"))
