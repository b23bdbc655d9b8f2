"""The ASGI app a container serves, per web kind. Each builder imports only what its kind needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from shipyard.container._types import ASGIApp
from shipyard.spec import WebConfig


def fastapi_endpoint_app(handler: Callable[..., Any], web: WebConfig) -> ASGIApp:
    """Serves `handler` as the route "/" of a FastAPI app, with FastAPI's own parameter semantics.

    FastAPI resolves string annotations (`from __future__ import annotations`) through the callable's
    `__globals__`, which bound methods forward to their function, so both plain functions and methods of
    a class work.
    """
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    # Like the hosted product: the OpenAPI schema (and so /docs and /redoc) only when asked for.
    app = FastAPI(openapi_url="/openapi.json" if web.docs else None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_api_route("/", handler, methods=[web.method.upper()])
    return app


def wsgi_app(wsgi: Any) -> ASGIApp:
    from a2wsgi import WSGIMiddleware

    return cast(ASGIApp, WSGIMiddleware(wsgi))
