"""Choosing the runtime (local or Ray) and the cluster API: nodes, and routes for regional proxies."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header

from ..exceptions import AuthError
from ..proxy import RoutingTable
from ..runtime import LocalRuntime, RayRuntime, Runtime
from ..runtime._ray import DEFAULT_NODE_ROOT
from ._credentials import admin_token_matches


@dataclass(frozen=True)
class RayOptions:
    """`shipyard server --runtime ray`: where the cluster is, and the shared paths nodes use."""

    address: str | None = None
    node_root: str = DEFAULT_NODE_ROOT
    volumes_dir: Path | None = None
    """Volumes on Ray: a shared file system mounted at this same path on every node."""


async def make_runtime(options: RayOptions) -> RayRuntime:
    # ray.init blocks (it connects to the cluster's control store); keep it off the event loop.
    return await asyncio.to_thread(RayRuntime, options.address, node_root=options.node_root)


def _local_node(runtime: LocalRuntime) -> dict[str, Any]:
    return {
        "node_id": "local", "address": socket.gethostname(), "alive": True,
        "resources": {"CPU": float(os.cpu_count() or 1)}, "labels": {}, "regions": [],
        "accelerators": [], "containers": runtime.container_ids(),
    }


def cluster_router(
    runtime: Runtime, table: RoutingTable, admin_token: str, regional_proxies: dict[str, str]
) -> APIRouter:
    """Nodes, and the routes of a region for its proxy (`regional_proxies`: region → proxy URL)."""
    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        presented = authorization[7:].strip() if authorization and authorization.lower().startswith(
            "bearer ") else None
        if not admin_token_matches(presented, admin_token):
            raise AuthError("Missing or wrong admin credential: send 'Authorization: Bearer <token>' "
                            "with the token from $SHIPYARD_HOME/admin_token")

    router = APIRouter(prefix="/api/cluster", dependencies=[Depends(require_admin)])

    @router.get("/nodes")
    async def nodes() -> list[dict[str, Any]]:
        if isinstance(runtime, RayRuntime):
            return await asyncio.to_thread(runtime.nodes)
        if isinstance(runtime, LocalRuntime):
            return [_local_node(runtime)]
        return []

    @router.get("/routes")
    def routes(region: str, url: str | None = None) -> list[dict[str, Any]]:
        """The routes of `region`; a proxy polling with its `url` is the region's proxy from now on."""
        if url:
            regional_proxies[region] = url
        return [r.model_dump() for r in table.routes() if r.region == region]

    @router.get("/proxies")
    def proxies() -> dict[str, str]:
        return dict(regional_proxies)

    return router
