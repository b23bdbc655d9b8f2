"""`shipyard server`: control plane, proxy and local runtime in one process (the embedded default)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import uvicorn

from .._paths import HomeLayout
from ..dashboard import create_dashboard
from ..proxy import Metrics, ProxyApp, ProxyLimits, RoutingTable
from ..proxy._forward import MAX_WEBSOCKET_MESSAGE
from ..runtime import LocalRuntime, Runtime
from ._api import create_api
from ._calls import QuietServer, add_call_routes
from ._cluster import RayOptions, cluster_router, make_runtime
from ._credentials import ensure_admin_token
from ._endpoints import install_endpoints
from ._images import ImageBuilder
from ._logs import AppLogs
from ._platform import Platform, PlatformSettings
from ._scheduler import Scheduler
from ._schedules import ScheduleRunner
from ._store import Store
from ._volumes import VolumeStore

logger = logging.getLogger("shipyard.server")
REAP_INTERVAL = 5.0


async def _reap_forever(platform: Platform) -> None:
    while True:
        await asyncio.sleep(REAP_INTERVAL)
        try:
            await platform.reap_ephemeral_apps()
        except Exception:  # the reaper must outlive one bad app
            logger.exception("reaping ephemeral apps failed")


async def serve(
    home: Path, host: str, port: int, workspace: str, domain: str, limits: ProxyLimits | None = None,
    ray: RayOptions | None = None,
    *,
    spare_containers: bool = False,
) -> None:
    limits = limits or ProxyLimits()
    layout = HomeLayout(home)
    layout.ensure()
    shutil.rmtree(layout.run, ignore_errors=True)
    layout.run.mkdir(parents=True)
    admin_token = ensure_admin_token(layout)
    # Code in containers calls the control plane over this socket (their network namespace has no route
    # to the host's loopback) with a token that lives as long as this server.
    call_token = secrets.token_urlsafe(32)
    api_socket = layout.run / "api.sock"
    store = Store(layout.database)
    table = RoutingTable()
    logs = AppLogs(layout.logs)
    metrics = Metrics()
    runtime: Runtime = (
        LocalRuntime(layout.run, spares=spare_containers) if ray is None else await make_runtime(ray)
    )
    scheduler = Scheduler(
        runtime, table, run_dir=layout.run, logs=logs, max_queue=limits.max_queue,
        metrics=metrics,
    )
    metrics.watch_pools(scheduler.pool_states)
    platform = Platform(
        layout=layout,
        store=store,
        builder=ImageBuilder(layout.images),
        scheduler=scheduler,
        table=table,
        logs=logs,
        settings=PlatformSettings(workspace=workspace, domain=domain, port=port),
        volumes=VolumeStore(ray.volumes_dir if ray and ray.volumes_dir else layout.root / "volumes",
                            mounts_supported=ray is not None or getattr(runtime, "sandboxed", False)),
        caller_env={"SHIPYARD_API_SOCKET": str(api_socket), "SHIPYARD_CALL_TOKEN": call_token},
    )
    api = create_api(platform, admin_token)
    calls = add_call_routes(api, platform, admin_token, call_token)
    api.include_router(cluster_router(runtime, table, admin_token, platform.settings.regional_proxies))
    app = ProxyApp(table, domain=domain, fallback=api, limits=limits, metrics=metrics)
    endpoints, gateway = install_endpoints(platform, app, api, admin_token)
    api.mount("/dashboard", create_dashboard(platform, admin_token, metrics=metrics, endpoints=endpoints))
    config = uvicorn.Config(
        gateway,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=MAX_WEBSOCKET_MESSAGE + 1024,
        lifespan="off",
        access_log=False,
        # The proxy sets X-Forwarded-For itself from the peer address; trusting the client's own
        # (uvicorn's default for loopback peers) would let it pick the address containers see.
        proxy_headers=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    socket_server = QuietServer(uvicorn.Config(
        api, uds=str(api_socket), loop="uvloop", http="httptools", lifespan="off", access_log=False,
        log_level="warning", timeout_graceful_shutdown=5,
    ))
    await platform.refresh_tokens()
    await platform.restore()
    await endpoints.restore()
    background = [asyncio.create_task(scheduler.run()), asyncio.create_task(_reap_forever(platform)),
                  asyncio.create_task(ScheduleRunner(platform, calls).run()),
                  asyncio.create_task(endpoints.run_meter())]
    socket_task = asyncio.create_task(socket_server.serve())
    info = {"url": f"http://{host}:{port}", "pid": os.getpid(), "workspace": workspace,
            "domain": domain, "port": port}
    layout.server_info.write_text(json.dumps(info))
    try:
        await server.serve()
    finally:
        socket_server.should_exit = True
        await socket_task
        await calls.close()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await endpoints.close()
        await scheduler.close()
        store.close()
        with contextlib.suppress(FileNotFoundError):
            if json.loads(layout.server_info.read_text()).get("pid") == os.getpid():
                layout.server_info.unlink()


def run_server(
    home: Path,
    host: str,
    port: int,
    workspace: str = "shipyard",
    domain: str = "localhost",
    limits: ProxyLimits | None = None,
    ray: RayOptions | None = None,
    *,
    spare_containers: bool = False,
) -> None:
    """Run the platform until Ctrl-C or SIGTERM; containers are stopped on the way out."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # httpx logs every request it sends at INFO: one line per proxied request is hot-path cost.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import uvloop

    uvloop.run(serve(home, host, port, workspace, domain, limits, ray, spare_containers=spare_containers))
