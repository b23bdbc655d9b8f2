"""LLM endpoints: resolve the model, pick a recipe, fetch weights, deploy the engine as an app.

An endpoint is an app `endpoint-{name}` with one function: `asgi_app` when the engine is a Python
ASGI app the container serves itself (llama.cpp), else `web_server`, whose container runs the engine's
OpenAI server on loopback (vLLM, SGLang); the endpoint gateway in front of the proxy exposes its OpenAI
routes and meters tokens. Rows in the `endpoints` table keep what was chosen (never a token).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import sys
import tarfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from .._labels import host_label, validate_label
from .._tokens import new_id
from ..endpoints import (
    ENGINE_PORT,
    EndpointCreate,
    EndpointGateway,
    EndpointInfo,
    EndpointRecordSpec,
    GatewayRoute,
    UsageRow,
    derive_name,
    load_catalog,
    select_recipe,
)
from ..endpoints._container import ARGV_ENV
from ..endpoints._hardware import check_colocation, endpoint_hardware, parse_gpu
from ..endpoints._models import WeightsSource
from ..endpoints._weights import (
    PinnedRepo,
    bundled_gguf,
    check_model_dir,
    download_hf,
    folder_size,
    model_folder,
    pin_hf_revision,
    volume_dir,
)
from ..exceptions import AlreadyExistsError, ContainerError, InvalidError, NotFoundError, ShipyardError
from ..proxy import ProxyApp
from ..spec import (
    AppSpec,
    AutoscalerSettings,
    DeployRequest,
    FunctionSpec,
    Resources,
    SecretSpec,
    WebConfig,
    WebKind,
)
from ._platform import Platform
from ._usage import DEFAULT_CPU, DEFAULT_MEMORY_MIB, Rates, Subject, UsageMeter

logger = logging.getLogger("shipyard.endpoints")
APP_PREFIX = "endpoint-"
METER_TICK = 1.0
FLUSH_EVERY = 5.0
WARMUP_TIMEOUT = 900.0
_GPU_ENV = ("LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_VISIBLE_DEVICES")
_ENTRY = "from shipyard.endpoints._container import serve, serve_app  # noqa: F401\n"


@dataclass
class _Row:
    endpoint_id: str
    name: str
    environment: str
    app_id: str | None
    status: str
    status_reason: str | None
    spec: EndpointRecordSpec
    created_at: float


def _bundle() -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = _ENTRY.encode()
        info = tarfile.TarInfo("endpoint.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def _gpu_env() -> dict[str, str]:
    """The node's CUDA settings: containers start from a minimal environment, and without these a
    GPU engine may not find the driver's libraries or may see GPUs the node was not given."""
    return {key: os.environ[key] for key in _GPU_ENV if key in os.environ}


def _secret_name(endpoint_id: str) -> str:
    return f"{endpoint_id}-hf-token"


class EndpointService:
    def __init__(self, platform: Platform, gateway: EndpointGateway, meter: UsageMeter) -> None:
        self.platform = platform
        self.gateway = gateway
        self.meter = meter
        self._store = platform.store
        self._tasks: dict[str, asyncio.Task[None]] = {}
        """Endpoint id → its provisioning task."""
        self._subjects: dict[str, Subject] = {}
        """App id → billing subject of the endpoint it serves."""
        self._app_envs: dict[str, str] = {}

    # -- the store ------------------------------------------------------------------------------

    def _rows(self, environment: str | None) -> list[_Row]:
        sql = "SELECT * FROM endpoints"
        params: tuple[str, ...] = ()
        if environment is not None:
            sql, params = sql + " WHERE environment = ?", (environment,)
        return [
            _Row(r["endpoint_id"], r["name"], r["environment"], r["app_id"], r["status"], r["status_reason"],
                 EndpointRecordSpec.model_validate_json(r["spec"]), r["created_at"])
            for r in self._store._query(sql + " ORDER BY created_at", params)
        ]

    def _find(self, name: str, environment: str) -> _Row:
        for row in self._rows(environment):
            if row.name == name or row.endpoint_id == name:
                return row
        raise NotFoundError(f"No endpoint '{name}' in environment '{environment}'")

    def _save(self, row: _Row) -> None:
        with self._store._transaction() as conn:
            conn.execute(
                "INSERT INTO endpoints (endpoint_id, name, environment, app_id, status, status_reason, spec, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint_id) DO UPDATE SET "
                "app_id = excluded.app_id, status = excluded.status, status_reason = excluded.status_reason, "
                "spec = excluded.spec",
                (row.endpoint_id, row.name, row.environment, row.app_id, row.status, row.status_reason,
                 row.spec.model_dump_json(), row.created_at),
            )

    async def _set_status(self, row: _Row, status: str, reason: str | None = None) -> None:
        row.status, row.status_reason = status, reason
        await asyncio.to_thread(self._save, row)

    # -- use cases ------------------------------------------------------------------------------

    async def create(self, request: EndpointCreate) -> EndpointInfo:
        environment = request.environment
        name = request.name or derive_name(request.model)
        validate_label(name)
        if any(r.name == name for r in await asyncio.to_thread(self._rows, environment)):
            raise AlreadyExistsError(f"Endpoint '{name}' already exists in environment '{environment}'")
        catalog = load_catalog()
        entry = catalog.find(request.model)
        if request.custom_hf_repo and request.custom_volume_name:
            raise InvalidError("Pass either --custom-hf-repo or --custom-volume-name, not both")
        if bool(request.custom_volume_name) != bool(request.custom_volume_path):
            raise InvalidError("--custom-volume-name and --custom-volume-path go together")
        if request.colocate_compute:
            check_colocation(request.routing_region)
        # A container can use at most one node's CPUs: size the engine's threads (and the CPU request)
        # by the largest node it may be placed on, so that the runtime can always place it.
        node_cpus = await self.platform.scheduler.node_cpus(
            request.routing_region if request.colocate_compute else None)
        hardware = await asyncio.to_thread(endpoint_hardware, request.gpu, max(1, int(node_cpus)))
        served = request.custom_hf_repo or entry.repo
        recipe = select_recipe(entry, hardware, served_model_name=served, catalog=catalog)
        if recipe.engine not in hardware.engines:
            raise InvalidError(
                f"The recipe for {entry.repo} on {hardware.describe()} uses {recipe.engine}, which is not "
                "installed on this runtime"
            )
        cpu = recipe.engine == "llama.cpp"
        token = request.custom_hf_token.get_secret_value() if request.custom_hf_token else None
        endpoint_id = new_id("ep")
        pinned: PinnedRepo | None = None
        status = "provisioning"
        source: WeightsSource
        if request.custom_hf_repo:
            pinned = await asyncio.to_thread(
                pin_hf_revision, request.custom_hf_repo, request.custom_hf_revision, token
            )
            source, weights, status = "huggingface", "", "downloading"
        elif request.custom_volume_name and request.custom_volume_path:
            if self.platform.volumes is None:
                raise InvalidError("Volumes are not available on this server")
            folder = volume_dir(self.platform.volumes.path(environment, request.custom_volume_name),
                                request.custom_volume_name, request.custom_volume_path)
            origin = f"Volume '{request.custom_volume_name}' path '{request.custom_volume_path}'"
            source, weights = "volume", str(await asyncio.to_thread(check_model_dir, folder, cpu=cpu,
                                                                    origin=origin))
        elif cpu:
            assert entry.cpu is not None
            source, weights = "bundled-gguf", str(await asyncio.to_thread(bundled_gguf, entry.cpu))
        else:
            source, weights = "catalog", entry.repo
        if token:
            await asyncio.to_thread(self._store.put_secret, _secret_name(endpoint_id), environment,
                                    {"HF_TOKEN": token}, force=True, now=time.time())
        gpu_type = hardware.gpu_type
        spec = EndpointRecordSpec(
            model=entry.repo, served_model_name=served, weights_source=source, weights=weights,
            custom_hf_repo=request.custom_hf_repo, custom_hf_revision=pinned.revision if pinned else None,
            has_hf_token=bool(token), custom_volume_name=request.custom_volume_name,
            custom_volume_path=request.custom_volume_path, routing_region=request.routing_region,
            colocate_compute=request.colocate_compute, unauthenticated=request.unauthenticated,
            gpu=gpu_type, gpu_count=recipe.gpu_count,
            cpu=float(hardware.cpu_cores) if cpu else 8.0, memory_mib=1024 if cpu else 65536,
            engine=recipe.engine, recipe=recipe.summary(), in_process=recipe.in_process,
            argv=recipe.command(weights="{weights}", port=ENGINE_PORT, python=sys.executable,
                                threads=hardware.cpu_cores),
            min_containers=request.min_containers, max_containers=request.max_containers,
            scaledown_window=request.scaledown_window,
            download_bytes=pinned.size_bytes if pinned else 0,
        )
        row = _Row(endpoint_id, name, environment, None, status, None, spec, time.time())
        await asyncio.to_thread(self._save, row)
        self._spawn(row, self._provision(row, pinned, token))
        return self._info(row)

    async def list_endpoints(self, environment: str | None) -> list[EndpointInfo]:
        return [self._info(row) for row in await asyncio.to_thread(self._rows, environment)]

    async def get(self, name: str, environment: str) -> EndpointInfo:
        return self._info(await asyncio.to_thread(self._find, name, environment))

    async def stop(self, name: str, environment: str) -> EndpointInfo:
        row = await asyncio.to_thread(self._find, name, environment)
        self._cancel(row)
        self._route_stopped(row)
        with contextlib.suppress(NotFoundError):
            await self.platform.stop_app(APP_PREFIX + row.name, environment)
        await self._set_status(row, "stopped")
        await asyncio.to_thread(self.meter.flush)
        return self._info(row)

    async def start(self, name: str, environment: str) -> EndpointInfo:
        row = await asyncio.to_thread(self._find, name, environment)
        if row.status != "stopped" and row.status != "failed":
            raise InvalidError(f"Endpoint '{name}' is {self._status(row)[0]}, not stopped")
        await self._set_status(row, "provisioning")
        self._spawn(row, self._provision(row, None, None))
        return self._info(row)

    async def delete(self, name: str, environment: str) -> None:
        row = await asyncio.to_thread(self._find, name, environment)
        self._cancel(row)
        self._unroute(row)
        if row.app_id is not None:
            with contextlib.suppress(NotFoundError):
                await self.platform.delete_app(row.app_id)
        if row.spec.has_hf_token:
            with contextlib.suppress(NotFoundError):
                await asyncio.to_thread(self._store.delete_secret, _secret_name(row.endpoint_id), environment)

        def remove() -> None:
            with self._store._transaction() as conn:
                conn.execute("DELETE FROM endpoints WHERE endpoint_id = ?", (row.endpoint_id,))

        await asyncio.to_thread(remove)

    async def app_name(self, name: str, environment: str) -> str:
        row = await asyncio.to_thread(self._find, name, environment)
        return APP_PREFIX + row.name

    async def usage(self, environment: str | None, endpoint: str | None) -> list[UsageRow]:
        await asyncio.to_thread(self.meter.flush)
        return await asyncio.to_thread(self.meter.report, environment, endpoint)

    async def restore(self) -> None:
        """After a restart: route live endpoints again, resume interrupted provisioning."""
        for row in await asyncio.to_thread(self._rows, None):
            if row.status == "deployed":
                self._route(row)
            elif row.status == "stopped":
                self._route_stopped(row)
            elif row.status in ("provisioning", "downloading", "loading"):
                self._spawn(row, self._provision(row, None, None))

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.meter.flush()

    # -- provisioning ---------------------------------------------------------------------------

    def _spawn(self, row: _Row, coro: Coroutine[Any, Any, None]) -> None:
        self._cancel(row)
        task = asyncio.create_task(coro)
        self._tasks[row.endpoint_id] = task
        task.add_done_callback(lambda done: self._tasks.pop(row.endpoint_id, None) if
                               self._tasks.get(row.endpoint_id) is done else None)

    def _cancel(self, row: _Row) -> None:
        task = self._tasks.pop(row.endpoint_id, None)
        if task is not None:
            task.cancel()

    async def _provision(self, row: _Row, pinned: PinnedRepo | None, token: str | None) -> None:
        try:
            if row.spec.weights_source == "huggingface" and not row.spec.weights:
                await self._download(row, pinned, token)
            await self._set_status(row, "loading")
            await self._deploy(row)
        except ShipyardError as exc:
            await self._set_status(row, "failed", str(exc))
            if row.app_id is not None:
                self.platform.logs.platform(row.app_id, f"endpoint failed: {exc}")
            return
        await self._warm_up(row)

    async def _download(self, row: _Row, pinned: PinnedRepo | None, token: str | None) -> None:
        spec = row.spec
        assert spec.custom_hf_repo is not None and spec.custom_hf_revision is not None
        if token is None and spec.has_hf_token:
            values = await asyncio.to_thread(self._store.get_secret_values, _secret_name(row.endpoint_id),
                                             row.environment)
            token = values.get("HF_TOKEN")
        pinned = pinned or PinnedRepo(spec.custom_hf_repo, spec.custom_hf_revision, spec.download_bytes)
        await self._set_status(row, "downloading")

        def progress(done: int) -> None:
            spec.downloaded_bytes = done

        models = self.platform.layout.root / "models"

        async def watch() -> None:
            while True:
                await asyncio.sleep(0.5)
                progress(await asyncio.to_thread(folder_size, model_folder(models, pinned)))

        watcher = asyncio.create_task(watch())
        try:
            folder = await asyncio.to_thread(download_hf, pinned, models, token,
                                             cpu=spec.engine == "llama.cpp", progress=progress)
        finally:
            watcher.cancel()
        origin = f"Hugging Face repo '{spec.custom_hf_repo}' at {spec.custom_hf_revision[:12]}"
        spec.weights = str(await asyncio.to_thread(check_model_dir, folder, cpu=spec.engine == "llama.cpp",
                                                   origin=origin))
        await asyncio.to_thread(self._save, row)

    async def _deploy(self, row: _Row) -> None:
        spec = row.spec
        argv = [arg.replace("{weights}", spec.weights) for arg in spec.argv]
        gpu = f"{spec.gpu}:{spec.gpu_count}" if spec.gpu and spec.gpu_count else None
        qualname, kind, port = ("serve_app", WebKind.ASGI_APP, None) if spec.in_process else (
            "serve", WebKind.WEB_SERVER, ENGINE_PORT)
        function = FunctionSpec(
            tag="serve",
            qualname=qualname,
            web=WebConfig(kind=kind, port=port, label=row.name,
                          region=spec.routing_region, requires_proxy_auth=not spec.unauthenticated,
                          startup_timeout=WARMUP_TIMEOUT if gpu else 180.0),
            startup_timeout=(WARMUP_TIMEOUT if gpu else 180.0) + 30,
            env={ARGV_ENV: json.dumps(argv), "HF_HUB_DISABLE_TELEMETRY": "1", **(_gpu_env() if gpu else {})},
            secrets=[SecretSpec(name=_secret_name(row.endpoint_id))] if spec.has_hf_token else [],
            resources=Resources(cpu=spec.cpu, memory=spec.memory_mib, gpu=gpu,
                                region=spec.routing_region if spec.colocate_compute else None),
            timeout=600.0,
            autoscaler=AutoscalerSettings(
                min_containers=spec.min_containers, max_containers=spec.max_containers,
                scaledown_window=spec.scaledown_window, max_inputs=64 if gpu else 16,
            ),
        )
        app = AppSpec(name=APP_PREFIX + row.name, entry_file="endpoint.py", module_name="shipyard_endpoint",
                      functions=[function])
        request = DeployRequest(app=app, bundle=_bundle(), environment=row.environment)
        response = await self.platform.deploy(request, lambda _line: None)
        row.app_id = response.app_id
        await self._set_status(row, "deployed")
        self._route(row)

    async def _warm_up(self, row: _Row) -> None:
        """Start the first container at once, so that `--wait` ends when the model is loaded."""
        pool = None
        for deployment, *_counts in self.platform.scheduler.running():
            if deployment.app_id == row.app_id:
                pool = self.platform.scheduler.pool(deployment.function_id)
        if pool is None:
            return
        try:
            container = await asyncio.wait_for(pool.acquire(), WARMUP_TIMEOUT)
        except (ContainerError, TimeoutError) as exc:
            # Stays deployed: it shows as failed until a later request starts a container that serves.
            await self._set_status(row, "deployed", f"the engine did not start: {exc}")
            return
        pool.release(container)

    # -- routing and billing --------------------------------------------------------------------

    def _host_label(self, row: _Row) -> str:
        return host_label(self.platform.settings.workspace, row.environment, row.name)

    def _route(self, row: _Row) -> None:
        self.gateway.routes[self._host_label(row)] = GatewayRoute(row.endpoint_id)
        if row.app_id is not None:
            self._subjects[row.app_id] = Subject(
                "endpoint", row.endpoint_id, row.name, row.environment, row.spec.cpu, row.spec.memory_mib,
                row.spec.gpu, row.spec.gpu_count, row.spec.colocate_compute)

    def _route_stopped(self, row: _Row) -> None:
        message = (f"Endpoint '{row.name}' is stopped; start it again with "
                   f"`shipyard endpoint start {row.name} --env {row.environment}`")
        self.gateway.routes[self._host_label(row)] = GatewayRoute(row.endpoint_id, stopped=message)

    def _unroute(self, row: _Row) -> None:
        self.gateway.routes.pop(self._host_label(row), None)

    def record_tokens(self, endpoint_id: str, tokens_in: int, tokens_out: int) -> None:
        """The gateway's usage sink."""
        for subject in self._subjects.values():
            if subject.subject_id == endpoint_id:
                self.meter.tokens(subject, tokens_in, tokens_out)
                return

    async def _app_subject(self, app_id: str, spec: FunctionSpec) -> Subject | None:
        if app_id in self._subjects:
            return self._subjects[app_id]
        if app_id not in self._app_envs:
            try:
                record = await asyncio.to_thread(self._store.get_app, app_id)
            except NotFoundError:
                return None
            self._app_envs[app_id] = record.environment
        resources = spec.resources
        gpu, count = None, 0
        if resources.gpu:
            try:
                gpu, count = parse_gpu(resources.gpu)
            except InvalidError:
                gpu, count = resources.gpu, 1
        return Subject("app", app_id, "", self._app_envs[app_id], resources.cpu or DEFAULT_CPU,
                       resources.memory or DEFAULT_MEMORY_MIB, gpu, count, False)

    async def run_meter(self) -> None:
        self._last_tick = time.monotonic()
        last_flush = self._last_tick
        while True:
            await asyncio.sleep(METER_TICK)
            now = time.monotonic()
            elapsed, self._last_tick = now - self._last_tick, now
            try:
                for deployment, serving, starting, draining in self.platform.scheduler.running():
                    subject = await self._app_subject(deployment.app_id, deployment.spec)
                    if subject is not None:
                        if subject.kind == "app":
                            subject = Subject(**{**subject.__dict__, "name": deployment.app_name})
                        self.meter.accrue(subject, serving + starting + draining, elapsed)
                if now - last_flush >= FLUSH_EVERY:
                    last_flush = now
                    await asyncio.to_thread(self.meter.flush)
            except Exception:  # the meter must outlive one bad sample
                logger.exception("usage meter tick failed")

    # -- views ----------------------------------------------------------------------------------

    def _status(self, row: _Row) -> tuple[str, str | None, int]:
        if row.status != "deployed":
            return row.status, row.status_reason, 0
        scheduler = self.platform.scheduler
        for deployment, serving, starting, draining in scheduler.running():
            if deployment.app_id != row.app_id:
                continue
            pool = scheduler.pool(deployment.function_id)
            if serving:
                return "ready", None, serving + starting + draining
            if pool is not None and pool.unavailable is not None:
                return "failed", pool.unavailable, starting + draining
            if starting:
                return "loading", None, starting + draining
            if row.status_reason:
                return "failed", row.status_reason, draining
            return "idle", None, draining
        return "idle", None, 0

    def _info(self, row: _Row) -> EndpointInfo:
        status, reason, containers = self._status(row)
        label = self._host_label(row)
        server = f"http://127.0.0.1:{self.platform.settings.port}"
        return EndpointInfo(
            endpoint_id=row.endpoint_id, name=row.name, environment=row.environment, model=row.spec.model,
            served_model_name=row.spec.served_model_name, status=status,  # type: ignore[arg-type]
            status_reason=reason, url=self.platform.settings.region_url(label, row.spec.routing_region),
            dashboard_url=f"{server}/dashboard/endpoints/{row.endpoint_id}",
            region=row.spec.routing_region, colocate_compute=row.spec.colocate_compute,
            recipe=row.spec.recipe, engine=row.spec.engine, requires_proxy_auth=not row.spec.unauthenticated,
            weights_source=row.spec.weights_source, revision=row.spec.custom_hf_revision,
            containers=containers, download_bytes=row.spec.download_bytes,
            downloaded_bytes=row.spec.downloaded_bytes, created_at=row.created_at,
        )


def install_endpoints(
    platform: Platform, proxy: ProxyApp, api: FastAPI, admin_token: str
) -> tuple[EndpointService, EndpointGateway]:
    """Put the endpoint gateway in front of the proxy and the endpoint routes on the API."""
    from ._endpoints_api import endpoint_router

    service: EndpointService | None = None

    def sink(endpoint_id: str, tokens_in: int, tokens_out: int) -> None:
        if service is not None:
            service.record_tokens(endpoint_id, tokens_in, tokens_out)

    gateway = EndpointGateway(proxy, target=proxy._target, sink=sink)
    meter = UsageMeter(platform.store, Rates.load(platform.layout.root / "rates.json"))
    service = EndpointService(platform, gateway, meter)
    api.include_router(endpoint_router(service, admin_token))
    return service, gateway


__all__ = ["EndpointService", "install_endpoints"]
