"""Client address from `X-Forwarded-For`.

The container's socket is reachable only by the proxy, which sets the header, so the header is trusted.
"""

from __future__ import annotations

from typing import Any

from shipyard.container._types import ASGIApp, Receive, Scope, Send


class ForwardedForMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    ip = value.split(b",", 1)[0].strip().decode("latin-1")
                    if ip:
                        scope["client"] = (ip, 0)
                    break
        await self.app(scope, receive, send)


class LifespanStateMiddleware:
    """Gives each request a shallow copy of the lifespan state, as ASGI servers do."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["state"] = self.state.copy()
        await self.app(scope, receive, send)
