"""The ASGI app of a function that is called from Python (not a web function).

POST `CALL_PATH` takes cloudpickled `(args, kwargs)` and answers with one outcome; POST `GEN_PATH` runs a
generator function and streams one frame per item. The proxy-side pool forwards to it like to a web app.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sysconfig
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle

from shipyard._wire import (
    CALL_PATH,
    CONTENT_TYPE,
    ERROR,
    GEN_PATH,
    KIND_DONE,
    KIND_ERROR,
    KIND_OK,
    OK,
    OUTCOME_HEADER,
    failure_payload,
    frame,
)
from shipyard.container._types import Receive, Scope, Send

_SHIPYARD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB_DIR = sysconfig.get_paths()["stdlib"] + os.sep
_END = object()


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of user code on (the container's and asyncio's frames are noise)."""
    report = traceback.TracebackException.from_exception(exc)
    frames = list(report.stack)
    first = next((i for i, f in enumerate(frames) if not _is_internal(f.filename)), 0)
    report.stack = traceback.StackSummary.from_list(frames[first:])
    return "".join(report.format())


def _is_internal(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_SHIPYARD_DIR) or path.startswith(_STDLIB_DIR)


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the caller went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class CallApp:
    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] != "POST" or path not in (CALL_PATH, GEN_PATH):
            await _respond(send, 404, b"not found", "text/plain")
            return
        body = await _body(receive)
        try:
            args, kwargs = cloudpickle.loads(body)
        except Exception as exc:
            await _respond(send, 200, failure_payload(exc, _user_traceback(exc)), CONTENT_TYPE, ERROR)
            return
        if path == CALL_PATH:
            outcome, payload = await self._call(args, kwargs)
            await _respond(send, 200, payload, CONTENT_TYPE, outcome)
        else:
            await self._stream(send, args, kwargs)

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, bytes]:
        try:
            if inspect.iscoroutinefunction(self.handler):
                result = await self.handler(*args, **kwargs)
            else:
                result = await asyncio.to_thread(self.handler, *args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            return ERROR, failure_payload(exc, _user_traceback(exc))
        try:
            return OK, cloudpickle.dumps(result)
        except Exception as exc:
            error = TypeError(f"the function's result cannot be pickled: {exc!r}")
            return ERROR, failure_payload(error, "")

    async def _stream(self, send: Send, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE.encode())]})
        index = 0
        try:
            result = self.handler(*args, **kwargs) if inspect.isasyncgenfunction(self.handler) else (
                await asyncio.to_thread(self.handler, *args, **kwargs))
            if inspect.isasyncgen(result):
                async for item in result:
                    await _send_frame(send, frame(KIND_OK, index, cloudpickle.dumps(item)))
                    index += 1
            else:
                iterator = iter(result)
                while (item := await asyncio.to_thread(next, iterator, _END)) is not _END:
                    await _send_frame(send, frame(KIND_OK, index, cloudpickle.dumps(item)))
                    index += 1
        except Exception as exc:
            await _send_frame(send, frame(KIND_ERROR, index, failure_payload(exc, _user_traceback(exc))))
        await send({"type": "http.response.body", "body": frame(KIND_DONE, index, b"")})


async def _send_frame(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _respond(send: Send, status: int, body: bytes, content_type: str,
                   outcome: str | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if outcome is not None:
        headers.append((OUTCOME_HEADER.encode(), outcome.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
