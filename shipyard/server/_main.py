"""`shipyard server`: control plane, proxy and local runtime in one process (the embedded default)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import uvicorn

from .._paths import HomeLayout
from ..proxy import ProxyApp, RoutingTable
from ..proxy._forward import MAX_WEBSOCKET_MESSAGE
from ..runtime import LocalRuntime
from ._api import create_api
from ._credentials import ensure_admin_token
from ._images import ImageBuilder
from ._logs import AppLogs
from ._platform import Platform, PlatformSettings
from ._scheduler import Scheduler
from ._store import Store

logger = logging.getLogger("shipyard.server")
REAP_INTERVAL = 5.0


async def _reap_forever(platform: Platform) -> None:
    while True:
        await asyncio.sleep(REAP_INTERVAL)
        try:
            await platform.reap_ephemeral_apps()
        except Exception:  # the reaper must outlive one bad app
            logger.exception("reaping ephemeral apps failed")


async def serve(home: Path, host: str, port: int, workspace: str, domain: str) -> None:
    layout = HomeLayout(home)
    layout.ensure()
    shutil.rmtree(layout.run, ignore_errors=True)
    layout.run.mkdir(parents=True)
    admin_token = ensure_admin_token(layout)
    store = Store(layout.database)
    table = RoutingTable()
    logs = AppLogs(layout.logs)
    scheduler = Scheduler(LocalRuntime(layout.run), table, run_dir=layout.run, logs=logs)
    platform = Platform(
        layout=layout,
        store=store,
        builder=ImageBuilder(layout.images),
        scheduler=scheduler,
        table=table,
        logs=logs,
        settings=PlatformSettings(workspace=workspace, domain=domain, port=port),
    )
    app = ProxyApp(table, domain=domain, fallback=create_api(platform, admin_token))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=MAX_WEBSOCKET_MESSAGE + 1024,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    await platform.refresh_tokens()
    await platform.restore()
    background = [asyncio.create_task(scheduler.run()), asyncio.create_task(_reap_forever(platform))]
    info = {"url": f"http://{host}:{port}", "pid": os.getpid(), "workspace": workspace,
            "domain": domain, "port": port}
    layout.server_info.write_text(json.dumps(info))
    try:
        await server.serve()
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await scheduler.close()
        store.close()
        with contextlib.suppress(FileNotFoundError):
            if json.loads(layout.server_info.read_text()).get("pid") == os.getpid():
                layout.server_info.unlink()


def run_server(
    home: Path, host: str, port: int, workspace: str = "shipyard", domain: str = "localhost"
) -> None:
    """Run the platform until Ctrl-C or SIGTERM; containers are stopped on the way out."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import uvloop

    uvloop.run(serve(home, host, port, workspace, domain))
