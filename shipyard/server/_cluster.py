"""Choosing the runtime (local or Ray) and the cluster API: nodes, and routes for regional proxies."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends

from ..proxy import RoutingTable
from ..runtime import LocalRuntime, RayRuntime, Runtime
from ..runtime._ray import DEFAULT_NODE_ROOT
from ._credentials import admin_dependency


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
    router = APIRouter(prefix="/api/cluster", dependencies=[Depends(admin_dependency(admin_token))])

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
