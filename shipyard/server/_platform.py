"""Deploying, restoring and stopping apps: the control plane's use cases, behind the HTTP API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._labels import default_label, host_label
from .._paths import HomeLayout
from .._tokens import new_id
from ..exceptions import AlreadyExistsError, InvalidError, NotFoundError, ShipyardError
from ..proxy import RoutingTable
from ..spec import (
    AppInfo,
    AppSpec,
    AutoscalerSettings,
    DeployedFunction,
    DeployRequest,
    DeployResponse,
    FunctionSpec,
    Route,
)
from ._images import BuiltImage, ImageBuilder
from ._logs import AppLogs
from ._scheduler import FunctionDeployment, Scheduler
from ._store import AppRecord, Store
from ._volumes import VolumeStore

Progress = Callable[[str], None]
EPHEMERAL_TTL = 30.0
# Lets app code tell the container from the machine that deploys it (as the hosted product does).
IN_CONTAINER_ENV = {"SHIPYARD_IS_REMOTE": "1", "MODAL_IS_REMOTE": "1"}


@dataclass(frozen=True)
class PlatformSettings:
    workspace: str
    domain: str
    port: int
    regional_proxies: dict[str, str] = field(default_factory=dict)
    """Routing region → base URL of its proxy (`shipyard proxy --region`), as the proxies report it."""

    def url(self, host_label: str) -> str:
        return f"http://{host_label}.{self.domain}:{self.port}"

    def region_url(self, host_label: str, region: str | None) -> str:
        """The URL at the region's proxy when one is registered (path form: it needs no wildcard DNS)."""
        proxy = self.regional_proxies.get(region) if region else None
        return f"{proxy.rstrip('/')}/fn/{host_label}" if proxy else self.url(host_label)


def _without_secret_values(function: FunctionSpec) -> FunctionSpec:
    secrets = [secret.model_copy(update={"values": None}) for secret in function.secrets]
    return function.model_copy(update={"secrets": secrets})


def _unpack_bundle(bundle: str, target: Path) -> None:
    try:
        data = base64.b64decode(bundle, validate=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.extractall(target, filter="data")
    except (ValueError, tarfile.TarError) as exc:
        raise InvalidError(f"The app bundle is not a valid gzipped tar archive: {exc}") from exc


class Platform:
    def __init__(
        self,
        *,
        layout: HomeLayout,
        store: Store,
        builder: ImageBuilder,
        scheduler: Scheduler,
        table: RoutingTable,
        logs: AppLogs,
        settings: PlatformSettings,
        volumes: VolumeStore | None = None,
        caller_env: dict[str, str] | None = None,
    ) -> None:
        self.volumes = volumes
        self.caller_env = dict(caller_env or {})
        """Reaches every container with the secrets: how its code calls the control plane (socket, token)."""
        self.layout = layout
        self.store = store
        self.builder = builder
        self.scheduler = scheduler
        self.table = table
        self.logs = logs
        self.settings = settings
        self._deploy_lock = asyncio.Lock()

    # -- deploy -------------------------------------------------------------------------------------

    async def deploy(self, request: DeployRequest, progress: Progress) -> DeployResponse:
        app = request.app
        environment = request.environment
        secret_envs = [await self._resolve_secrets(f, environment) for f in app.functions]
        for function in app.functions:
            await self.scheduler.check_placement(function)
        if self.volumes is not None:
            await asyncio.to_thread(self.volumes.prepare, app, environment)
        bundle_dir = await asyncio.to_thread(self._store_bundle, request.bundle)
        async with self._deploy_lock:
            labels = self._labels(app, environment, ephemeral=request.ephemeral)
            self._check_label_conflicts(labels, app.name, environment)
            prepared = await self._prepare(app, bundle_dir, secret_envs, progress)
            record = await asyncio.to_thread(
                self.store.upsert_app,
                app.name,
                environment,
                ephemeral=request.ephemeral,
                spec=app,
                bundle_dir=str(bundle_dir),
                now=time.time(),
            )
            return await self._activate(record, prepared, labels)

    def _store_bundle(self, bundle: str) -> Path:
        """Unpack a bundle into a folder named by its content hash (identical bundles share it)."""
        target = self.layout.bundles / hashlib.sha256(bundle.encode()).hexdigest()[:20]
        if not target.exists():
            staging = self.layout.bundles / new_id("tmp")
            try:
                _unpack_bundle(bundle, staging)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return target

    async def _resolve_secrets(self, function: FunctionSpec, environment: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for secret in function.secrets:
            if secret.values is not None:
                values = secret.values
            else:
                assert secret.name is not None
                values = await asyncio.to_thread(self.store.get_secret_values, secret.name, environment)
            missing = [key for key in secret.required_keys if key not in values]
            if missing:
                raise InvalidError(
                    f"Secret '{secret.name}' is missing required keys: {', '.join(missing)}"
                )
            env.update(values)
        return env

    def _labels(self, app: AppSpec, environment: str, *, ephemeral: bool) -> dict[str, str]:
        """Function tag → host label, for web functions."""
        labels: dict[str, str] = {}
        for function in app.functions:
            if function.web is None:
                continue
            label = function.web.label or default_label(app.name, function.tag)
            labels[function.tag] = host_label(self.settings.workspace, environment, label, dev=ephemeral)
        return labels

    def web_url(self, record: AppRecord, tag: str) -> str | None:
        """The URL of a web function of a live app; None for other functions."""
        label = self._labels(record.spec, record.environment, ephemeral=record.state == "ephemeral").get(tag)
        return None if label is None else self.settings.url(label)

    def _check_label_conflicts(self, labels: dict[str, str], app_name: str, environment: str) -> None:
        for tag, label in labels.items():
            entry = self.table.lookup(label)
            owner = None if entry is None else (entry.route.app_name, entry.route.environment)
            if owner is not None and owner != (app_name, environment):
                raise AlreadyExistsError(
                    f"The URL label of '{tag}' ({label}) is already used by app '{owner[0]}'; "
                    "choose another label or stop that app"
                )

    async def _prepare(
        self,
        app: AppSpec,
        bundle_dir: Path,
        secret_envs: list[dict[str, str]],
        progress: Progress,
    ) -> list[tuple[FunctionSpec, dict[str, str], BuiltImage]]:
        prepared: list[tuple[FunctionSpec, dict[str, str], BuiltImage]] = []
        for function, secret_env in zip(app.functions, secret_envs, strict=True):
            built = await self.builder.ensure(function.image, bundle_dir, progress)
            prepared.append((function, secret_env, built))
        return prepared

    async def _activate(
        self,
        record: AppRecord,
        prepared: list[tuple[FunctionSpec, dict[str, str], BuiltImage]],
        labels: dict[str, str],
    ) -> DeployResponse:
        functions = {f.tag: f for f in await asyncio.to_thread(self.store.list_functions, record.app_id)}
        deployments: list[FunctionDeployment] = []
        deployed: list[DeployedFunction] = []
        for function, secret_env, built in prepared:
            function_id = functions[function.tag].function_id
            label = labels.get(function.tag)
            route = None
            if function.web is not None and label is not None:
                route = Route(
                    host_label=label,
                    function_id=function_id,
                    app_id=record.app_id,
                    app_name=record.name,
                    tag=function.tag,
                    environment=record.environment,
                    requires_proxy_auth=function.web.requires_proxy_auth,
                    timeout=function.timeout,
                    max_inputs=function.autoscaler.max_inputs,
                    region=function.web.region or function.resources.region,
                )
            deployments.append(
                FunctionDeployment(
                    function_id=function_id,
                    app_id=record.app_id,
                    app_name=record.name,
                    version=record.version,
                    spec=_without_secret_values(function),
                    module_name=record.spec.module_name,
                    entry_file=record.spec.entry_file,
                    bundle_dir=record.bundle_dir,
                    python=built.python,
                    python_path=list(built.python_path),
                    env=dict(built.env) | function.env | IN_CONTAINER_ENV
                    | {"SHIPYARD_APP_NAME": record.name, "SHIPYARD_APP_ID": record.app_id,
                       "SHIPYARD_ENVIRONMENT": record.environment},
                    mounts=list(built.mounts)
                    + ([] if self.volumes is None else self.volumes.mounts(function, record.environment)),
                    secret_env=secret_env | self.caller_env,
                    route=route,
                )
            )
            deployed.append(
                DeployedFunction(
                    tag=function.tag,
                    label=label,
                    url=None if label is None else self.settings.url(label),
                    requires_proxy_auth=route is not None and route.requires_proxy_auth,
                )
            )
        self.scheduler.apply(record.app_id, deployments)
        self.logs.platform(record.app_id, f"deployed version {record.version}")
        return DeployResponse(
            app_id=record.app_id, name=record.name, version=record.version, functions=deployed
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Serve deployed apps again after a restart; drop ephemeral apps of the previous run."""
        for record in await asyncio.to_thread(self.store.live_apps):
            if record.state == "ephemeral":
                await asyncio.to_thread(self.store.delete_app, record.app_id)
                continue
            try:
                secret_envs = [
                    await self._resolve_secrets(f, record.environment) for f in record.spec.functions
                ]
                prepared = await self._prepare(
                    record.spec, Path(record.bundle_dir), secret_envs, lambda _message: None
                )
                labels = self._labels(record.spec, record.environment, ephemeral=False)
                await self._activate(record, prepared, labels)
            except ShipyardError as exc:
                self.logs.platform(record.app_id, f"could not restore app after restart: {exc}")

    async def stop_app(self, name: str, environment: str) -> AppRecord:
        record = await asyncio.to_thread(self.store.find_app, name, environment)
        await asyncio.to_thread(self.store.set_app_state, record.app_id, "stopped")
        self.scheduler.remove_app(
            record.app_id,
            stopped_message=f"App '{name}' is stopped; deploy it again with `shipyard deploy`.",
        )
        return record

    async def delete_app(self, app_id: str) -> None:
        record = await asyncio.to_thread(self.store.get_app, app_id)
        self.scheduler.remove_app(record.app_id)
        await asyncio.to_thread(self.store.delete_app, record.app_id)

    async def reap_ephemeral_apps(self) -> None:
        for record in await asyncio.to_thread(self.store.stale_ephemeral_apps, time.time() - EPHEMERAL_TTL):
            self.logs.platform(record.app_id, "ephemeral app lost its `serve` session; removing it")
            await self.delete_app(record.app_id)

    async def list_apps(self, environment: str | None) -> list[AppInfo]:
        infos = []
        for record in await asyncio.to_thread(self.store.list_apps, environment):
            labels = (
                self._labels(record.spec, record.environment, ephemeral=record.state == "ephemeral")
                if record.state != "stopped"
                else {}
            )
            infos.append(
                AppInfo(
                    app_id=record.app_id,
                    name=record.name,
                    environment=record.environment,
                    state=record.state,
                    version=record.version,
                    created_at=record.created_at,
                    functions=[
                        DeployedFunction(
                            tag=f.tag,
                            label=labels.get(f.tag),
                            url=self.settings.url(labels[f.tag]) if f.tag in labels else None,
                            requires_proxy_auth=f.web is not None and f.web.requires_proxy_auth,
                        )
                        for f in record.spec.functions
                    ],
                    containers=self.scheduler.container_count(record.app_id),
                )
            )
        return infos

    async def scale_function(
        self, name: str, environment: str, tag: str, changes: dict[str, int | float | None]
    ) -> AutoscalerSettings:
        """Change the scaling settings of a running function without a redeploy (kept across restarts)."""
        record = await asyncio.to_thread(self.store.find_app, name, environment)
        functions = {f.tag: f for f in await asyncio.to_thread(self.store.list_functions, record.app_id)}
        function = functions.get(tag)
        if function is None:
            known = ", ".join(sorted(functions)) or "none"
            raise NotFoundError(f"App '{name}' has no function '{tag}'; its functions: {known}")
        settings = AutoscalerSettings.model_validate(function.spec.autoscaler.model_dump() | changes)
        _check_scaling(settings)
        await asyncio.to_thread(self.store.set_autoscaler, record.app_id, tag, settings)
        self.scheduler.set_autoscaler(function.function_id, settings)
        self.logs.platform(
            record.app_id,
            f"scaling of {tag} changed: min {settings.min_containers}, max {settings.max_containers}, "
            f"buffer {settings.buffer_containers}, scaledown window {settings.scaledown_window:g} s",
        )
        return settings

    async def refresh_tokens(self) -> None:
        self.table.set_tokens(await asyncio.to_thread(self.store.active_token_hashes))



def _check_scaling(settings: AutoscalerSettings) -> None:
    if settings.min_containers < 0 or settings.buffer_containers < 0:
        raise InvalidError("min_containers and buffer_containers must be >= 0")
    if settings.max_containers is not None and settings.max_containers < max(1, settings.min_containers):
        raise InvalidError("max_containers must be >= 1 and >= min_containers")
    if settings.scaledown_window <= 0:
        raise InvalidError("scaledown_window must be > 0 seconds")
