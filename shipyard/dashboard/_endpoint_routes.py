"""The Endpoints tab and the endpoint page (the CLI's dashboard link), built on the endpoint service."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..endpoints import REGIONS, EndpointCreate, EndpointInfo, load_catalog
from ..exceptions import InvalidError, NotFoundError
from ._web import Pages, back_to, environment_of

if TYPE_CHECKING:
    from ..server._endpoints import EndpointService
    from ..server._platform import Platform

SERVE_TAG = "serve"
"""The one function of an endpoint's app (see server/_endpoints.py)."""
STEPS = ("provisioning", "downloading", "loading", "ready")
HISTORY_LIMIT = 50
_TEXT_FIELDS = ("name", "model", "custom_hf_repo", "custom_hf_revision", "custom_hf_token",
                "custom_volume_name", "custom_volume_path", "routing_region", "environment", "gpu")
_NUMBER_FIELDS = ("min_containers", "max_containers", "scaledown_window")
_FLAGS = ("colocate_compute", "unauthenticated")


def _create_request(form: dict[str, str]) -> EndpointCreate:
    """The form's fields, as `endpoint create` would send them (blank fields keep their defaults)."""
    data: dict[str, Any] = {key: form[key].strip() for key in _TEXT_FIELDS + _NUMBER_FIELDS
                            if form.get(key, "").strip()}
    data.update({flag: True for flag in _FLAGS if form.get(flag)})
    try:
        return EndpointCreate.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidError(f"Invalid endpoint settings: {problems}") from exc


def _scale_changes(form: dict[str, str]) -> dict[str, int | float | None]:
    try:
        changes: dict[str, int | float | None] = {"min_containers": int(form.get("min_containers") or 0)}
        maximum = form.get("max_containers", "").strip()
        changes["max_containers"] = int(maximum) if maximum else None
        window = form.get("scaledown_window", "").strip()
        if window:
            changes["scaledown_window"] = float(window)
    except ValueError as exc:
        raise InvalidError(f"Scaling settings must be numbers: {exc}") from exc
    return changes


def _timeline(info: EndpointInfo) -> list[dict[str, str]]:
    """The steps to `ready`, each done, current, failed or pending."""
    steps = [s for s in STEPS if s != "downloading" or info.weights_source == "huggingface"]
    status = info.status
    reached = len(steps) if status in ("ready", "idle") else (steps.index(status) if status in steps else -1)
    result = []
    for index, step in enumerate(steps):
        if status == "failed" and index == 0:
            state = "failed"
        elif index < reached or (index == reached and status == "ready"):
            state = "done"
        elif index == reached:
            state = "current"
        else:
            state = "pending"
        result.append({"name": step, "state": state})
    return result


class _EndpointPages:
    def __init__(self, platform: Platform, service: EndpointService, pages: Pages) -> None:
        self.platform = platform
        self.service = service
        self.pages = pages
        self._history: dict[str, list[tuple[float, str]]] = {}
        """Endpoint id → status changes this server has seen (for the timeline)."""

    def _observe(self, info: EndpointInfo) -> list[tuple[float, str]]:
        history = self._history.setdefault(info.endpoint_id, [(info.created_at, "provisioning")])
        label = info.status + (f": {info.status_reason}" if info.status_reason else "")
        if history[-1][1] != label:
            history.append((time.time(), label))
            del history[:-HISTORY_LIMIT]
        return history

    async def _endpoint(self, endpoint_id: str) -> EndpointInfo:
        for info in await self.service.list_endpoints(None):
            if info.endpoint_id == endpoint_id:
                return info
        raise NotFoundError(f"Endpoint {endpoint_id!r} not found")

    async def endpoints(self, request: Request, error: str | None = None, form: dict[str, str] | None = None,
                   status_code: int = 200) -> Response:
        env = environment_of(request)
        endpoints = await self.service.list_endpoints(None if env == "*" else env)
        for info in endpoints:
            self._observe(info)
        return self.pages.render(
            request, "endpoints.html", status_code=status_code, endpoints=endpoints,
            catalog=load_catalog().models, regions=REGIONS, active="endpoints", error=error,
            form=form or {"environment": "main" if env == "*" else env,
                          "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "scaledown_window": "120"})

    async def list_live(self, request: Request) -> list[dict[str, Any]]:
        env = environment_of(request)
        return [
            {"id": info.endpoint_id, "status": info.status, "reason": info.status_reason,
             "containers": info.containers}
            for info in await self.service.list_endpoints(None if env == "*" else env)
        ]

    async def create(self, request: Request, form: dict[str, str]) -> Response:
        try:
            info = await self.service.create(_create_request(form))
        except (InvalidError, NotFoundError) as exc:
            # Back to the form with what was typed (except the token) and why it was refused.
            kept = {k: v for k, v in form.items() if k != "custom_hf_token"}
            return await self.endpoints(request, error=str(exc), form=kept, status_code=400)
        self._observe(info)
        return back_to(f"/endpoints/{info.endpoint_id}", info.environment)

    async def _live(self, info: EndpointInfo) -> dict[str, Any]:
        app_name = await self.service.app_name(info.name, info.environment)
        app = await asyncio.to_thread(self.platform.store.find_live_app, app_name, info.environment)
        containers: list[dict[str, Any]] = []
        logs: list[str] = []
        scaling = None
        if app is not None:
            for function in self.platform.scheduler.snapshot(app.app_id):
                containers.extend({"id": c.container_id, "state": c.state, "version": c.version, "age": c.age,
                                   "in_flight": c.in_flight} for c in function.containers)
            async for line in self.platform.logs.stream(app.app_id, follow=False):
                logs.append(line.rstrip("\n"))
            functions = await asyncio.to_thread(self.platform.store.list_functions, app.app_id)
            scaling = next((f.spec.autoscaler.model_dump() for f in functions if f.tag == SERVE_TAG), None)
        rows = await asyncio.to_thread(self.service.meter.report, info.environment, info.name)
        return {
            "info": info.model_dump(mode="json"),
            "timeline": _timeline(info),
            "history": [{"at": at, "status": status} for at, status in self._observe(info)],
            "containers": containers,
            "logs": logs[-100:],
            "scaling": scaling,
            "usage": {
                "requests": sum(r.requests for r in rows),
                "tokens_in": sum(r.tokens_in for r in rows),
                "tokens_out": sum(r.tokens_out for r in rows),
                "seconds": sum(r.seconds for r in rows),
                "cost": sum(r.cost for r in rows),
            },
        }

    async def page(self, request: Request) -> Response:
        info = await self._endpoint(request.path_params["endpoint_id"])
        live = await self._live(info)
        return self.pages.render(request, "endpoint.html", endpoint=info, live=live, env=info.environment,
                                 active="endpoints")

    async def live(self, request: Request) -> dict[str, Any]:
        return await self._live(await self._endpoint(request.path_params["endpoint_id"]))

    async def action(self, request: Request, _form: dict[str, str]) -> Response:
        info = await self._endpoint(request.path_params["endpoint_id"])
        verb = request.path_params["verb"]
        if verb == "stop":
            await self.service.stop(info.name, info.environment)
        elif verb == "start":
            await self.service.start(info.name, info.environment)
        elif verb == "delete":
            await self.service.delete(info.name, info.environment)
            self._history.pop(info.endpoint_id, None)
            return back_to("/endpoints", info.environment)
        else:
            raise NotFoundError(f"Unknown endpoint action {verb!r}")
        return back_to(f"/endpoints/{info.endpoint_id}", info.environment)

    async def scale(self, request: Request, form: dict[str, str]) -> Response:
        info = await self._endpoint(request.path_params["endpoint_id"])
        app_name = await self.service.app_name(info.name, info.environment)
        await self.platform.scale_function(app_name, info.environment, SERVE_TAG, _scale_changes(form))
        return back_to(f"/endpoints/{info.endpoint_id}", info.environment)


def endpoint_routes(platform: Platform, service: EndpointService, pages: Pages) -> list[BaseRoute]:
    views = _EndpointPages(platform, service, pages)
    return [
        Route("/endpoints", pages.page(views.endpoints)),
        Route("/endpoints/create", pages.action(views.create), methods=["POST"]),
        Route("/endpoints/{endpoint_id}", pages.page(views.page)),
        Route("/endpoints/{endpoint_id}/scale", pages.action(views.scale), methods=["POST"]),
        Route("/endpoints/{endpoint_id}/{verb}", pages.action(views.action), methods=["POST"]),
        Route("/api/endpoints", pages.json(views.list_live)),
        Route("/api/endpoints/{endpoint_id}", pages.json(views.live)),
    ]

