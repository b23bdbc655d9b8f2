"""The dashboard app: login, apps, proxy tokens and secrets (endpoints and usage live in their modules)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ._auth import SESSION_COOKIE, DashboardAuth
from ._endpoint_routes import endpoint_routes
from ._usage_routes import usage_routes
from ._web import PREFIX, Pages, back_to, environment_of, make_templates, read_form

if TYPE_CHECKING:
    # Type-only: the server imports this package while it is itself being imported.
    from ..proxy import Metrics
    from ..server._endpoints import EndpointService
    from ..server._platform import Platform

LOG_TAIL_LINES = 200


def _safe_next(target: str | None) -> str:
    # Only paths inside the dashboard: never an open redirect to another site (`//evil`, `https:`).
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/apps"


def _request_counts(metrics: Metrics | None, app_name: str) -> dict[str, dict[str, int]]:
    """Function tag → HTTP status → requests answered since the server started (from the proxy's metrics)."""
    counts: dict[str, dict[str, int]] = {}
    if metrics is None:
        return counts
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("app") == app_name:
                by_status = counts.setdefault(sample.labels["function"], {})
                by_status[sample.labels["status"]] = int(sample.value)
    return counts


class _AppPages:
    def __init__(self, platform: Platform, pages: Pages, metrics: Metrics | None) -> None:
        self.platform = platform
        self.pages = pages
        self.metrics = metrics

    async def login_form(self, request: Request) -> Response:
        if self.pages.auth.is_signed_in(request):
            return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        return self.pages.render(request, "login.html", next=request.query_params.get("next", ""), error=None)

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        session = self.pages.auth.login(form.get("token", ""))
        if session is None:
            return self.pages.render(request, "login.html", status_code=401, next=form.get("next", ""),
                                     error="Wrong admin credential: use the token in "
                                           "$SHIPYARD_HOME/admin_token.")
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path=PREFIX)
        return response

    async def logout(self, _request: Request, _form: dict[str, str]) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    async def home(self, _request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/apps", status_code=303)

    async def apps(self, request: Request) -> Response:
        env = environment_of(request)
        apps = await self.platform.list_apps(None if env == "*" else env)
        return self.pages.render(request, "apps.html", apps=apps, active="apps")

    async def _app(self, request: Request) -> Any:
        app_id = request.path_params["app_id"]
        for info in await self.platform.list_apps(None):
            if info.app_id == app_id:
                return info
        return await asyncio.to_thread(self.platform.store.get_app, app_id)  # raises NotFoundError

    async def app(self, request: Request) -> Response:
        info = await self._app(request)
        record = await asyncio.to_thread(self.platform.store.get_app, info.app_id)
        specs = {f.tag: f for f in record.spec.functions}
        return self.pages.render(request, "app.html", app=info, specs=specs, env=info.environment,
                                 active="apps")

    async def app_live(self, request: Request) -> dict[str, Any]:
        app_id = request.path_params["app_id"]
        record = await asyncio.to_thread(self.platform.store.get_app, app_id)
        lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        async for line in self.platform.logs.stream(app_id, follow=False):
            lines.append(line.rstrip("\n"))
        requests = _request_counts(self.metrics, record.name)
        functions = [
            {
                "tag": f.tag,
                "requests": requests.get(f.tag, {}),
                "version": f.version,
                "queued": f.queued,
                "in_flight": f.in_flight,
                "containers": [
                    {"id": c.container_id, "state": c.state, "version": c.version, "age": c.age,
                     "in_flight": c.in_flight}
                    for c in f.containers
                ],
            }
            for f in self.platform.scheduler.snapshot(app_id)
        ]
        return {"state": record.state, "version": record.version, "functions": functions, "logs": list(lines),
                "now": time.time()}

    async def stop_app(self, request: Request, _form: dict[str, str]) -> Response:
        record = await asyncio.to_thread(self.platform.store.get_app, request.path_params["app_id"])
        await self.platform.stop_app(record.name, record.environment)
        return back_to(f"/apps/{record.app_id}", record.environment)

    # -- proxy tokens and secrets -------------------------------------------------------------------

    async def tokens(self, request: Request, created: Any = None) -> Response:
        env = environment_of(request)
        tokens = await asyncio.to_thread(self.platform.store.list_proxy_tokens, env)
        return self.pages.render(request, "tokens.html", tokens=tokens, created=created, active="tokens")

    async def create_token(self, request: Request, _form: dict[str, str]) -> Response:
        env = environment_of(request)
        created = await asyncio.to_thread(self.platform.store.create_proxy_token, env, time.time())
        await self.platform.refresh_tokens()
        # Rendered directly (not redirected): the secret is shown on this response and never again.
        return await self.tokens(request, created=created)

    async def revoke_token(self, request: Request, _form: dict[str, str]) -> Response:
        await asyncio.to_thread(self.platform.store.revoke_proxy_token, request.path_params["token_id"])
        await self.platform.refresh_tokens()
        return back_to("/tokens", environment_of(request))

    async def secrets(self, request: Request) -> Response:
        env = environment_of(request)
        secrets = await asyncio.to_thread(self.platform.store.list_secrets, env)
        return self.pages.render(request, "secrets.html", secrets=secrets, active="secrets")

    async def delete_secret(self, request: Request, _form: dict[str, str]) -> Response:
        env = environment_of(request)
        await asyncio.to_thread(self.platform.store.delete_secret, request.path_params["name"], env)
        return back_to("/secrets", env)


def app_routes(platform: Platform, pages: Pages, metrics: Metrics | None) -> list[BaseRoute]:
    views = _AppPages(platform, pages, metrics)
    return [
        Route("/", pages.page(views.home)),
        Route("/login", views.login_form, methods=["GET"]),
        Route("/login", views.login, methods=["POST"]),
        Route("/logout", pages.action(views.logout), methods=["POST"]),
        Route("/apps", pages.page(views.apps)),
        Route("/apps/{app_id}", pages.page(views.app)),
        Route("/apps/{app_id}/stop", pages.action(views.stop_app), methods=["POST"]),
        Route("/api/apps/{app_id}", pages.json(views.app_live)),
        Route("/tokens", pages.page(views.tokens)),
        Route("/tokens/create", pages.action(views.create_token), methods=["POST"]),
        Route("/tokens/{token_id}/revoke", pages.action(views.revoke_token), methods=["POST"]),
        Route("/secrets", pages.page(views.secrets)),
        Route("/secrets/{name}/delete", pages.action(views.delete_secret), methods=["POST"]),
    ]


def create_dashboard(platform: Platform, admin_token: str, *, metrics: Metrics | None,
                     endpoints: EndpointService) -> Starlette:
    """The dashboard as an ASGI app, to be mounted at `/dashboard` of the control-plane API.

    `metrics` (the proxy's) supplies the request and error counts shown per function; `endpoints` the
    Endpoints tab and, through its usage meter, the Usage page.
    """
    pages = Pages(DashboardAuth(admin_token), make_templates())
    routes = [
        *app_routes(platform, pages, metrics),
        *endpoint_routes(platform, endpoints, pages),
        *usage_routes(pages, endpoints.meter),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]
    return Starlette(routes=routes)
