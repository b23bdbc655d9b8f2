"""Calling functions from Python: `.remote`, `.spawn`, `.map`, `.remote_gen`, through the function's pool.

A call takes a slot of the same per-function pool as a web request, so it queues, wakes a scaled-to-zero
function and respects `max_containers` like one. Results of spawned calls are kept in SQLite as pickled
BLOBs: they are the user's payloads, opaque to Shipyard, not control-plane state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

import httpx
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .._tokens import new_id
from .._wire import (
    CALL_PATH,
    CONTENT_TYPE,
    ERROR,
    GEN_PATH,
    KIND_DONE,
    KIND_ERROR,
    KIND_INPUT,
    KIND_OK,
    OK,
    OUTCOME_HEADER,
    FrameReader,
    frame,
    platform_failure,
)
from ..exceptions import AuthError, ContainerError, FunctionTimeoutError, InvalidError, NotFoundError
from ..proxy import FunctionPool
from ..proxy._forward import wait_for_exit_reason
from ..spec import FunctionSpec
from ._credentials import admin_token_matches
from ._dicts import DictStore, dict_routes
from ._platform import Platform
from ._store import AppRecord, Store
from ._volumes import volume_routes

_URL = "http://container"
"""Requests to a container go over its Unix socket; the host part of the URL is not used."""
MAX_WAIT_S = 55.0
"""Longest a `GET /api/calls/{id}` waits; callers that want longer ask again."""


@dataclass(frozen=True)
class Target:
    app_name: str
    environment: str
    function_id: str
    spec: FunctionSpec
    pool: FunctionPool

    @property
    def what(self) -> str:
        return f"{self.app_name}.{self.spec.tag}"


class CallStore:
    """The `calls` table (migration 3) on the control plane's store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        failure = platform_failure(ContainerError("the server restarted before the call finished"))
        with store._transaction() as conn:
            conn.execute("UPDATE calls SET state = 'done', outcome = ?, result = ?, finished_at = ? "
                         "WHERE state = 'pending'", (ERROR, failure, time.time()))

    def create(self, call_id: str, function_id: str) -> None:
        with self._store._transaction() as conn:
            conn.execute("INSERT INTO calls (call_id, function_id, state, created_at) "
                         "VALUES (?, ?, 'pending', ?)", (call_id, function_id, time.time()))

    def finish(self, call_id: str, outcome: str, result: bytes) -> None:
        with self._store._transaction() as conn:
            conn.execute("UPDATE calls SET state = 'done', outcome = ?, result = ?, finished_at = ? "
                         "WHERE call_id = ?", (outcome, result, time.time(), call_id))

    def get(self, call_id: str) -> tuple[str, str | None, bytes | None]:
        rows = self._store._query("SELECT state, outcome, result FROM calls WHERE call_id = ?", (call_id,))
        if not rows:
            raise NotFoundError(f"Function call {call_id!r} not found")
        return rows[0]["state"], rows[0]["outcome"], rows[0]["result"]


class CallService:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._calls = CallStore(platform.store)
        self._pending: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- targets ------------------------------------------------------------------------------------

    async def resolve(self, app_name: str, tag: str, environment: str, *, allow_web: bool = False,
                      app_id: str | None = None) -> Target:
        """The function `tag` of the live app `app_name`; `app_id` picks one app when a deployed app and a
        `serve`/`run` session share the name (code calling its own app's functions sends it)."""
        store = self._platform.store
        record = await asyncio.to_thread(self._find_app, app_name, environment, app_id)
        functions = {f.tag: f for f in await asyncio.to_thread(store.list_functions, record.app_id)}
        function = functions.get(tag)
        if function is None:
            names = ", ".join(sorted(functions)) or "none"
            raise NotFoundError(f"Function '{tag}' not found in app '{app_name}' (its functions: {names})")
        if function.spec.web is not None and not allow_web:
            url = self._platform.web_url(record, tag)
            raise InvalidError(f"'{tag}' is a web function and cannot be called with .remote()/.spawn()/"
                               f".map(): send an HTTP request to its URL instead: {url}")
        pool = self._platform.scheduler.pool(function.function_id)
        if pool is None:
            raise NotFoundError(f"Function '{tag}' of app '{app_name}' is not running (see `shipyard app "
                                f"logs {app_name}`)")
        return Target(app_name, environment, function.function_id, function.spec, pool)

    def _find_app(self, app_name: str, environment: str, app_id: str | None) -> AppRecord:
        store = self._platform.store
        if app_id:
            with contextlib.suppress(NotFoundError):
                record = store.get_app(app_id)
                if (record.name, record.environment) == (app_name, environment) and record.state != "stopped":
                    return record
        return store.find_app(app_name, environment)

    # -- one call -----------------------------------------------------------------------------------

    async def _attempt(self, target: Target, payload: bytes) -> tuple[str, bytes]:
        try:
            container = await target.pool.acquire()
        except ContainerError as exc:
            return ERROR, platform_failure(ContainerError(f"Function '{target.what}' is unavailable: {exc}"))
        try:
            response = await container.upstream.post(
                _URL + CALL_PATH, content=payload,
                timeout=httpx.Timeout(target.spec.timeout, connect=10.0))
        except httpx.TimeoutException:
            return ERROR, platform_failure(FunctionTimeoutError(
                f"Function '{target.what}' timed out after {target.spec.timeout:g} s"))
        except httpx.TransportError as exc:
            reason = await wait_for_exit_reason(container)
            message = f"crashed while running the call: {reason}" if reason else f"failed: {exc}"
            return ERROR, platform_failure(ContainerError(f"Container {container.container_id} {message}"))
        finally:
            target.pool.release(container)
        outcome = response.headers.get(OUTCOME_HEADER)
        if response.status_code != 200 or outcome not in (OK, ERROR):
            text = response.text[:500]
            return ERROR, platform_failure(ContainerError(f"Function '{target.what}' answered "
                                                          f"HTTP {response.status_code}: {text}"))
        return outcome, response.content

    async def call(self, target: Target, payload: bytes) -> tuple[str, bytes]:
        """Run one call, trying again after failures as the function's `retries=` asks."""
        policy = target.spec.retries
        attempt = 0
        while True:
            outcome, result = await self._attempt(target, payload)
            if outcome == OK or policy is None or attempt >= policy.max_retries:
                return outcome, result
            delay = min(policy.max_delay, policy.initial_delay * policy.backoff_coefficient ** attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def stream(self, target: Target, payload: bytes) -> AsyncIterator[bytes]:
        """The frames of a generator call, as the container sends them."""
        try:
            container = await target.pool.acquire()
        except ContainerError as exc:
            error = ContainerError(f"Function '{target.what}' is unavailable: {exc}")
            yield frame(KIND_ERROR, 0, platform_failure(error))
            yield frame(KIND_DONE, 0, b"")
            return
        try:
            timeout = httpx.Timeout(target.spec.timeout, connect=10.0)
            request = container.upstream.stream("POST", _URL + GEN_PATH, content=payload, timeout=timeout)
            async with request as response:
                async for chunk in response.aiter_raw():
                    yield chunk
        except httpx.TransportError as exc:
            reason = await wait_for_exit_reason(container)
            error = ContainerError(f"Container {container.container_id} broke the stream: {reason or exc}")
            yield frame(KIND_ERROR, 0, platform_failure(error))
            yield frame(KIND_DONE, 0, b"")
        finally:
            target.pool.release(container)

    # -- spawned calls ------------------------------------------------------------------------------

    async def spawn(self, target: Target, payload: bytes, *, scheduled: bool = False) -> str:
        call_id = new_id("fc")
        await asyncio.to_thread(self._calls.create, call_id, target.function_id)
        done = asyncio.Event()
        self._pending[call_id] = done

        async def run() -> None:
            try:
                outcome, result = await self.call(target, payload)
                await asyncio.to_thread(self._calls.finish, call_id, outcome, result)
            finally:
                self._pending.pop(call_id, None)
                done.set()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call_id

    async def result(self, call_id: str, wait: float) -> tuple[str, bytes] | None:
        """The outcome of a spawned call, waiting up to `wait` seconds; None while it runs."""
        done = self._pending.get(call_id)
        if done is not None and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), min(wait, MAX_WAIT_S))
        state, outcome, result = await asyncio.to_thread(self._calls.get, call_id)
        if state == "pending" or outcome is None or result is None:
            return None
        return outcome, result

    # -- map ----------------------------------------------------------------------------------------

    async def map(self, target: Target, inputs: list[bytes]) -> AsyncIterator[bytes]:
        """Frames of every input's outcome, in the order they finish."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def one(index: int, payload: bytes) -> None:
            outcome, result = await self.call(target, payload)
            queue.put_nowait(frame(KIND_OK if outcome == OK else KIND_ERROR, index, result))

        tasks = [asyncio.create_task(one(i, p)) for i, p in enumerate(inputs)]
        try:
            for _ in tasks:
                yield await queue.get()
            yield frame(KIND_DONE, len(inputs), b"")
        finally:
            for task in tasks:
                task.cancel()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def caller_dependency(*tokens: str) -> object:
    """A FastAPI dependency that accepts the admin token or the token containers receive."""

    def require(authorization: Annotated[str | None, Header()] = None) -> None:
        presented = None
        if authorization and authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        if not any(admin_token_matches(presented, token) for token in tokens):
            raise AuthError("Missing or wrong credential: send 'Authorization: Bearer <token>' with the "
                            "token from $SHIPYARD_HOME/admin_token")

    return Depends(require)


def _outcome_response(outcome: str, payload: bytes) -> Response:
    return Response(content=payload, media_type=CONTENT_TYPE, headers={OUTCOME_HEADER: outcome})


def call_routes(service: CallService, auth: object) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[auth])  # type: ignore[list-item]

    @router.get("/functions/{app_name}/{tag}")
    async def describe(app_name: str, tag: str, env: str = "main",
                       app_id: str | None = None) -> dict[str, object]:
        target = await service.resolve(app_name, tag, env, allow_web=True, app_id=app_id)
        record = await asyncio.to_thread(service._find_app, app_name, env, app_id)
        return {"function_id": target.function_id, "tag": tag, "web": target.spec.web is not None,
                "url": service._platform.web_url(record, tag), "is_generator": target.spec.is_generator}

    @router.post("/functions/{app_name}/{tag}/call")
    async def call(app_name: str, tag: str, request: Request, env: str = "main",
                   app_id: str | None = None) -> Response:
        target = await service.resolve(app_name, tag, env, app_id=app_id)
        return _outcome_response(*await service.call(target, await request.body()))

    @router.post("/functions/{app_name}/{tag}/call_gen")
    async def call_gen(app_name: str, tag: str, request: Request, env: str = "main",
                       app_id: str | None = None) -> StreamingResponse:
        target = await service.resolve(app_name, tag, env, app_id=app_id)
        if not target.spec.is_generator:
            raise InvalidError(f"'{tag}' is not a generator function: use .remote() instead of .remote_gen()")
        return StreamingResponse(service.stream(target, await request.body()), media_type=CONTENT_TYPE)

    @router.post("/functions/{app_name}/{tag}/spawn")
    async def spawn(app_name: str, tag: str, request: Request, env: str = "main",
                    app_id: str | None = None) -> dict[str, str]:
        target = await service.resolve(app_name, tag, env, app_id=app_id)
        return {"call_id": await service.spawn(target, await request.body())}

    @router.post("/functions/{app_name}/{tag}/map")
    async def map_inputs(app_name: str, tag: str, request: Request, env: str = "main",
                         app_id: str | None = None) -> StreamingResponse:
        target = await service.resolve(app_name, tag, env, app_id=app_id)
        reader = FrameReader()
        frames = reader.feed(await request.body())
        if reader.pending or any(f.kind != KIND_INPUT for f in frames):
            raise InvalidError("Malformed map request body")
        inputs = [f.payload for f in sorted(frames, key=lambda f: f.index)]
        return StreamingResponse(service.map(target, inputs), media_type=CONTENT_TYPE)

    @router.get("/calls/{call_id}")
    async def get_call(call_id: str, wait: Annotated[float, Query(alias="timeout")] = 0.0) -> Response:
        result = await service.result(call_id, max(0.0, wait))
        if result is None:
            return JSONResponse({"call_id": call_id, "status": "pending"}, status_code=202)
        return _outcome_response(*result)

    return router


def add_call_routes(api: FastAPI, platform: Platform, admin_token: str, call_token: str) -> CallService:
    """Add the routes code calls from Python (calls, Dicts, Volumes); return the call service."""
    auth = caller_dependency(admin_token, call_token)
    service = CallService(platform)
    api.include_router(call_routes(service, auth))
    api.include_router(dict_routes(DictStore(platform.store), auth))
    if platform.volumes is not None:
        api.include_router(volume_routes(platform.volumes, auth))
    return service


class QuietServer(uvicorn.Server):
    """A second listener of the server's process: the main server owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
