"""`shipyard proxy --region R`: the entry point for the web functions and endpoints of one routing region.

Design choice: the regional proxy does not own container pools. It pulls the routes of its region from
the control plane every second and relays their requests to the control plane's proxy, which queues
them, applies auth, limits and autoscaling, and forwards to the container wherever Ray placed it. One
queue per function keeps `max_inputs`, `max_containers` and scale-from-zero exact across proxies; the
cost is one extra hop to the control plane's proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from starlette.types import Receive, Scope, Send

from ._app import request_target, send_text
from ._forward import (
    ClientDisconnected,
    ResponseTimedOut,
    UpstreamFailed,
    forward_http,
    forwarded_headers,
    open_upstream,
)

log = logging.getLogger("shipyard.proxy.regional")
REFRESH_S = 1.0
_TIMEOUT_MARGIN_S = 5.0


class RegionalProxy:
    """ASGI app serving the routes of `region`, relayed to the control plane at `server_url`."""

    def __init__(self, server_url: str, token: str, region: str, *, public_url: str,
                 domain: str = "localhost") -> None:
        url = httpx.URL(server_url)
        self.region = region
        self._public_url = public_url
        self._suffix = "." + domain
        self._server_url = server_url
        self._api = httpx.AsyncClient(base_url=server_url, headers={"Authorization": f"Bearer {token}"},
                                      timeout=10.0)
        self._upstream = open_upstream(f"tcp://{url.host}:{url.port or 80}")
        self._timeouts: dict[str, float] = {}
        self.loaded = asyncio.Event()

    async def refresh(self) -> None:
        # Polling with our URL also (re)registers us, so endpoint URLs point here even after a restart.
        response = await self._api.get("/api/cluster/routes",
                                        params={"region": self.region, "url": self._public_url})
        response.raise_for_status()
        self._timeouts = {r["host_label"]: float(r["timeout"]) for r in response.json()}
        self.loaded.set()

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except httpx.HTTPError as exc:
                # Keep serving the last table while the control plane is unreachable.
                log.warning("cannot refresh routes from %s: %s", self._server_url, exc)
            await asyncio.sleep(REFRESH_S)

    async def close(self) -> None:
        await self._api.aclose()
        await self._upstream.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        label, _path = request_target(scope, self._suffix)
        if scope["type"] != "http":
            # WebSockets go to the control plane's proxy directly (documented limitation).
            await send({"type": "websocket.close", "code": 1008})
            return
        timeout = self._timeouts.get(label) if label is not None else None
        if timeout is None:
            await send_text(send, 404, f"No web function of region {self.region} is served at "
                                       f"'{label or scope['path']}' by this proxy.")
            return
        with contextlib.suppress(ClientDisconnected, ResponseTimedOut):
            try:
                await forward_http(self._upstream, scope, receive, send, path=scope["path"],
                                   headers=forwarded_headers(scope), limit_s=timeout + _TIMEOUT_MARGIN_S)
            except UpstreamFailed as exc:
                await send_text(send, 502, f"The control plane's proxy at {self._server_url} failed: {exc}")
