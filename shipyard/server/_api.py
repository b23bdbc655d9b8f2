"""The control plane's HTTP API (used by the CLI and, later, the dashboard)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from .. import __version__
from ..exceptions import (
    AlreadyExistsError,
    AuthError,
    InvalidError,
    NotFoundError,
    ShipyardError,
)
from ..spec import AppInfo, AutoscalerSettings, DeployRequest, ProxyTokenCreated, ProxyTokenInfo, SecretInfo
from ._credentials import admin_dependency
from ._platform import Platform


class ScaleRequest(BaseModel):
    """Only the fields given change."""

    min_containers: int | None = None
    max_containers: int | None = None
    buffer_containers: int | None = None
    scaledown_window: float | None = None


class SecretCreate(BaseModel):
    name: str
    env: str = "main"
    values: dict[str, str]
    force: bool = False


def _status_of(exc: ShipyardError) -> int:
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, AlreadyExistsError):
        return 409
    if isinstance(exc, InvalidError):
        return 400
    return 500


def create_api(platform: Platform, admin_token: str) -> FastAPI:
    api = FastAPI(title="Shipyard control plane", docs_url=None, redoc_url=None, openapi_url=None)
    store = platform.store

    @api.exception_handler(ShipyardError)
    async def _shipyard_error(_request: Request, exc: ShipyardError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_status_of(exc))

    admin = [Depends(admin_dependency(admin_token))]

    @api.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "workspace": platform.settings.workspace, "version": __version__}

    @api.post("/api/apps/deploy", dependencies=admin)
    async def deploy(request: DeployRequest) -> StreamingResponse:
        return StreamingResponse(_deploy_events(platform, request), media_type="application/x-ndjson")

    @api.get("/api/apps", dependencies=admin)
    async def list_apps(env: str = "main") -> list[AppInfo]:
        return await platform.list_apps(None if env == "*" else env)

    @api.post("/api/apps/{name}/stop", dependencies=admin)
    async def stop_app(name: str, env: str = "main") -> dict[str, str]:
        record = await platform.stop_app(name, env)
        return {"app_id": record.app_id, "state": "stopped"}

    @api.delete("/api/apps/by-id/{app_id}", dependencies=admin)
    async def delete_app(app_id: str) -> dict[str, bool]:
        await platform.delete_app(app_id)
        return {"ok": True}

    @api.post("/api/apps/by-id/{app_id}/heartbeat", dependencies=admin)
    def heartbeat(app_id: str) -> dict[str, bool]:
        store.touch_heartbeat(app_id, time.time())
        return {"ok": True}

    @api.post("/api/apps/{name}/functions/{tag}/scale", dependencies=admin)
    async def scale_function(
        name: str, tag: str, body: ScaleRequest, env: str = "main"
    ) -> AutoscalerSettings:
        return await platform.scale_function(name, env, tag, body.model_dump(exclude_none=True))

    @api.get("/api/apps/{name}/logs", dependencies=admin)
    async def app_logs(name: str, env: str = "main", follow: bool = False) -> StreamingResponse:
        record = await asyncio.to_thread(store.find_app, name, env)
        lines = platform.logs.stream(record.app_id, follow=follow)
        return StreamingResponse(lines, media_type="text/plain; charset=utf-8")

    @api.post("/api/secrets", dependencies=admin)
    def create_secret(body: SecretCreate) -> SecretInfo:
        return store.put_secret(body.name, body.env, body.values, force=body.force, now=time.time())

    @api.get("/api/secrets", dependencies=admin)
    def list_secrets(env: str = "main") -> list[SecretInfo]:
        return store.list_secrets(env)

    @api.delete("/api/secrets/{name}", dependencies=admin)
    def delete_secret(name: str, env: str = "main") -> dict[str, bool]:
        store.delete_secret(name, env)
        return {"ok": True}

    @api.post("/api/proxy-tokens", dependencies=admin)
    async def create_token(env: str = "main") -> ProxyTokenCreated:
        created = await asyncio.to_thread(store.create_proxy_token, env, time.time())
        await platform.refresh_tokens()
        return created

    @api.get("/api/proxy-tokens", dependencies=admin)
    def list_tokens(env: str = "main") -> list[ProxyTokenInfo]:
        return store.list_proxy_tokens(env)

    @api.delete("/api/proxy-tokens/{token_id}", dependencies=admin)
    async def revoke_token(token_id: str) -> dict[str, bool]:
        await asyncio.to_thread(store.revoke_proxy_token, token_id)
        await platform.refresh_tokens()
        return {"ok": True}

    return api


class _Event(BaseModel):
    event: str
    message: str | None = None
    status: int | None = None
    data: dict[str, Any] | None = Field(default=None)


async def _deploy_events(platform: Platform, request: DeployRequest) -> AsyncIterator[bytes]:
    """Run the deploy and stream its progress lines, then the result or the error."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    task = asyncio.create_task(platform.deploy(request, queue.put_nowait))
    task.add_done_callback(lambda _task: queue.put_nowait(None))
    while (message := await queue.get()) is not None:
        yield _line(_Event(event="progress", message=message))
    try:
        result = task.result()
    except ShipyardError as exc:
        yield _line(_Event(event="error", status=_status_of(exc), message=str(exc)))
    else:
        yield _line(_Event(event="result", data=json.loads(result.model_dump_json())))


def _line(event: _Event) -> bytes:
    return event.model_dump_json(exclude_none=True).encode() + b"\n"
