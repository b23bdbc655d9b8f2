"""Runs the ASGI lifespan protocol of a user app ourselves, so that a failed startup is reported
with its traceback before the container says it is ready."""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Any

from shipyard.container._types import ASGIApp, Message
from shipyard.exceptions import ContainerError

_RETURNED = "shipyard.app_returned"


class Lifespan:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._error: str | None = None
        self.supported = False

    async def startup(self) -> None:
        """Sends `lifespan.startup` and waits for the app's answer.

        An app that returns or raises before answering does not speak the lifespan protocol (a bare
        ASGI app that only knows "http"); like uvicorn's "auto" mode we then go on without it.
        """
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._task = asyncio.create_task(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] == "lifespan.startup.complete":
            self.supported = True
        elif message["type"] == "lifespan.startup.failed":
            raise ContainerError(f"ASGI app lifespan startup failed:\n{message.get('message', '')}")
        elif message["type"] == _RETURNED:
            if self._error is not None:
                print(f"shipyard: the ASGI app does not support lifespan:\n{self._error}", file=sys.stderr)
        else:
            raise ContainerError(f"ASGI app sent {message['type']!r} during lifespan startup")

    async def shutdown(self, limit_s: float) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            message = await asyncio.wait_for(self._from_app.get(), limit_s)
        except TimeoutError:
            print(f"shipyard: ASGI lifespan shutdown did not finish within {limit_s} s", file=sys.stderr)
            self._task.cancel()
            return
        if message["type"] == "lifespan.shutdown.failed":
            print(f"shipyard: ASGI lifespan shutdown failed:\n{message.get('message', '')}", file=sys.stderr)
        elif message["type"] == _RETURNED and self._error is not None:
            print(f"shipyard: ASGI lifespan shutdown failed:\n{self._error}", file=sys.stderr)

    async def _run(self, scope: Message) -> None:
        try:
            await self._app(scope, self._to_app.get, self._send)
        except Exception:
            self._error = traceback.format_exc()
        finally:
            await self._from_app.put({"type": _RETURNED})

    async def _send(self, message: Message) -> None:
        await self._from_app.put(message)
