"""HTTP API of endpoints and usage (admin token), mounted on the control-plane API."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from ..endpoints import EndpointCreate, EndpointInfo, UsageRow, load_catalog
from ._credentials import admin_dependency
from ._endpoints import EndpointService


def endpoint_router(service: EndpointService, admin_token: str) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(admin_dependency(admin_token))])

    @router.get("/endpoints/catalog")
    def catalog() -> list[dict[str, Any]]:
        return [model.model_dump(exclude_none=True) for model in load_catalog().models]

    @router.post("/endpoints")
    async def create(request: EndpointCreate) -> EndpointInfo:
        return await service.create(request)

    @router.get("/endpoints")
    async def list_endpoints(env: str = "main") -> list[EndpointInfo]:
        return await service.list_endpoints(None if env == "*" else env)

    @router.get("/endpoints/{name}")
    async def get(name: str, env: str = "main") -> EndpointInfo:
        return await service.get(name, env)

    @router.post("/endpoints/{name}/stop")
    async def stop(name: str, env: str = "main") -> EndpointInfo:
        return await service.stop(name, env)

    @router.post("/endpoints/{name}/start")
    async def start(name: str, env: str = "main") -> EndpointInfo:
        return await service.start(name, env)

    @router.delete("/endpoints/{name}")
    async def delete(name: str, env: str = "main") -> dict[str, bool]:
        await service.delete(name, env)
        return {"ok": True}

    @router.get("/endpoints/{name}/logs")
    async def logs(name: str, env: str = "main", follow: bool = False) -> StreamingResponse:
        app_name = await service.app_name(name, env)
        record = await asyncio.to_thread(service.platform.store.find_app, app_name, env)
        lines = service.platform.logs.stream(record.app_id, follow=follow)
        return StreamingResponse(lines, media_type="text/plain; charset=utf-8")

    @router.get("/usage")
    async def usage(env: str = "main", endpoint: str | None = None) -> list[UsageRow]:
        return await service.usage(None if env == "*" else env, endpoint)

    return router
