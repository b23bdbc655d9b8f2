"""Shared plumbing of the dashboard pages: templates, the session guard, form parsing, redirects."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..exceptions import ShipyardError
from ._auth import CSRF_FIELD, DashboardAuth

PREFIX = "/dashboard"
MAX_FORM_BYTES = 64 * 1024
DEFAULT_ENV = "main"
# Everything the pages load comes from this server; no inline script or style may run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


def _ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return duration(time.time() - timestamp) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:.0f}s"
    return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:.0f}m"


def _clock(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def make_templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        # Every user string (names, environments, log lines, errors) is escaped unless marked safe.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["ago"] = _ago
    environment.filters["duration"] = duration
    environment.filters["clock"] = _clock
    return Jinja2Templates(env=environment)


class Pages:
    """Renders pages for signed-in users; everything else is sent to the login form."""

    def __init__(self, auth: DashboardAuth, templates: Jinja2Templates) -> None:
        self.auth = auth
        self.templates = templates

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context.setdefault("env", environment_of(request))
        context.setdefault("active", "")
        context.update(request=request, csrf_field=CSRF_FIELD, csrf_token=self.auth.csrf_token(),
                       prefix=PREFIX, signed_in=self.auth.is_signed_in(request))
        response = self.templates.TemplateResponse(request, name, context, status_code=status_code)
        response.headers.update(SECURITY_HEADERS)
        return response

    def page(self, handler: Handler) -> Handler:
        """Guard an HTML page: without a session, redirect to the login form."""

        async def guarded(request: Request) -> Response:
            if not self.auth.is_signed_in(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
            try:
                return await handler(request)
            except ShipyardError as exc:
                return self.render(request, "error.html", status_code=_status_of(exc), message=str(exc))

        return guarded

    def action(self, handler: Callable[[Request, dict[str, str]], Awaitable[Response]]) -> Handler:
        """Guard a form POST: session and CSRF token required; the parsed form goes to the handler."""

        async def guarded(request: Request) -> Response:
            if not self.auth.is_signed_in(request):
                return RedirectResponse(f"{PREFIX}/login", status_code=303)
            form = await read_form(request)
            if not self.auth.csrf_ok(form.get(CSRF_FIELD)):
                return self.render(request, "error.html", status_code=403,
                                   message="The form expired or did not come from this dashboard; reload the "
                                           "page and try again.")
            try:
                return await handler(request, form)
            except ShipyardError as exc:
                return self.render(request, "error.html", status_code=_status_of(exc), message=str(exc))

        return guarded

    def json(self, handler: Callable[[Request], Awaitable[Any]]) -> Handler:
        """Guard a JSON route used by the live-update script: 401 without a session."""

        async def guarded(request: Request) -> Response:
            if not self.auth.is_signed_in(request):
                return JSONResponse({"detail": "not signed in"}, status_code=401, headers=SECURITY_HEADERS)
            try:
                data = await handler(request)
            except ShipyardError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=_status_of(exc),
                                    headers=SECURITY_HEADERS)
            return JSONResponse(data, headers=SECURITY_HEADERS)

        return guarded


def _status_of(exc: ShipyardError) -> int:
    # The API's mapping, imported here because the server package imports the dashboard at load time.
    from ..server._api import _status_of as status_of

    return status_of(exc)


def environment_of(request: Request) -> str:
    return request.query_params.get("env") or DEFAULT_ENV


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the last value of each field): forms here never upload files."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in fields.items()}


def back_to(path: str, env: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}{path}?env={quote(env)}", status_code=303)
