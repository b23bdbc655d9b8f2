"""Calling deployed functions from Python: `.remote`, `.spawn`, `.map`, `.remote_gen`, `FunctionCall`.

Every call goes to the control plane, which queues it on the function's pool like a web request. Arguments
are pickled before anything is sent, so an unpicklable argument fails in the caller with nothing sent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from .._client import control_plane, current_environment, quote
from .._wire import (
    ERROR,
    KIND_DONE,
    KIND_ERROR,
    KIND_INPUT,
    KIND_OK,
    OK,
    OUTCOME_HEADER,
    FrameReader,
    dumps_args,
    exception_from,
    frame,
    loads_result,
)
from ..exceptions import ExecutionError, InvalidError, ServerError

_POLL_S = 50.0


def _outcome(response: httpx.Response, what: str) -> Any:
    outcome = response.headers.get(OUTCOME_HEADER)
    if outcome == OK:
        return loads_result(response.content, what)
    if outcome == ERROR:
        raise exception_from(response.content, what)
    raise ServerError(f"Unexpected answer to {what}: HTTP {response.status_code}")


class FunctionCall:
    """A spawned call. `get()` waits for its result; `FunctionCall.from_id(id)` finds it from anywhere."""

    def __init__(self, call_id: str) -> None:
        self.object_id = call_id

    @classmethod
    def from_id(cls, function_call_id: str) -> FunctionCall:
        if not isinstance(function_call_id, str) or not function_call_id.startswith("fc-"):
            raise InvalidError(f"Invalid function call id {function_call_id!r}: ids look like 'fc-…'")
        return cls(function_call_id)

    def get(self, timeout: float | None = None) -> Any:
        """The call's result (or its exception, raised). `timeout=0` polls; TimeoutError while it runs."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        what = f"function call {self.object_id}"
        while True:
            wait = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic()))
            response = control_plane().request("GET", f"/api/calls/{quote(self.object_id)}",
                                               params={"timeout": str(wait)})
            if response.status_code != 202:
                return _outcome(response, what)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{what} has not finished yet")

    def __repr__(self) -> str:
        return f"FunctionCall({self.object_id!r})"


class CallMethods:
    """The calling side of a function: subclasses say where it lives (`_target`)."""

    def _target(self) -> tuple[str, str, str]:
        """(app name, environment, function tag)."""
        raise NotImplementedError

    def _local_web(self) -> bool:
        """Whether this process already knows the function is a web function."""
        return False

    def _app_id(self) -> str | None:
        """The exact app to call when this process runs inside it (a deployed app and a `serve` session
        may share a name)."""
        return None

    def _path(self, verb: str) -> tuple[str, dict[str, str], str]:
        app_name, environment, tag = self._target()
        app_id = self._app_id()
        params = {"env": environment} | ({"app_id": app_id} if app_id else {})
        return f"/api/functions/{quote(app_name)}/{quote(tag)}/{verb}", params, f"{app_name}.{tag}"

    def _check_callable(self, verb: str) -> None:
        if self._local_web():
            _, _, tag = self._target()
            raise InvalidError(f"{tag} is a web function and cannot be called with .{verb}(): send an HTTP "
                               f"request to its URL instead ({tag}.get_web_url() returns it).")

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in a container and return its result."""
        self._check_callable("remote")
        path, params, what = self._path("call")
        payload = dumps_args(what, args, kwargs)
        return _outcome(control_plane().request("POST", path, params=params, content=payload), what)

    def remote_gen(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Run a generator function in a container, yielding its items as they come."""
        self._check_callable("remote_gen")
        path, params, what = self._path("call_gen")
        payload = dumps_args(what, args, kwargs)
        return _stream_items(path, params, payload, what)

    def spawn(self, *args: Any, **kwargs: Any) -> FunctionCall:
        """Start the function in a container and return at once; the result waits in the `FunctionCall`."""
        self._check_callable("spawn")
        path, params, what = self._path("spawn")
        payload = dumps_args(what, args, kwargs)
        body = control_plane().request("POST", path, params=params, content=payload).json()
        return FunctionCall(str(body["call_id"]))

    def map(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None, order_outputs: bool = True,
            return_exceptions: bool = False) -> Iterator[Any]:
        """Run the function once per input (one argument from each iterable), in parallel containers."""
        return self.starmap(zip(*iterables, strict=False), kwargs=kwargs, order_outputs=order_outputs,
                            return_exceptions=return_exceptions)

    def starmap(self, input_iterator: Iterable[Iterable[Any]], *, kwargs: dict[str, Any] | None = None,
                order_outputs: bool = True, return_exceptions: bool = False) -> Iterator[Any]:
        """Like `map`, with each input already a tuple of arguments."""
        self._check_callable("map")
        path, params, what = self._path("map")
        extra = dict(kwargs or {})
        # All inputs are pickled (and so checked) before the request starts.
        body = b"".join(frame(KIND_INPUT, index, dumps_args(what, tuple(args), extra))
                        for index, args in enumerate(input_iterator))
        return _map_results(path, params, body, what, order_outputs, return_exceptions)

    def for_each(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None,
                 ignore_exceptions: bool = False) -> None:
        for _ in self.map(*iterables, kwargs=kwargs, return_exceptions=ignore_exceptions):
            pass

    def get_web_url(self) -> str | None:
        """The URL of a web function (None for other functions)."""
        path, params, _what = self._path("")
        body = control_plane().request("GET", path.rstrip("/"), params=params).json()
        url = body.get("url")
        return url if isinstance(url, str) else None


def _stream_items(path: str, params: dict[str, str], payload: bytes, what: str) -> Iterator[Any]:
    reader = FrameReader()
    with control_plane().stream("POST", path, params=params, content=payload) as response:
        for chunk in response.iter_raw():
            for item in reader.feed(chunk):
                if item.kind == KIND_OK:
                    yield loads_result(item.payload, what)
                elif item.kind == KIND_ERROR:
                    raise exception_from(item.payload, what)
                elif item.kind == KIND_DONE:
                    return
    raise ExecutionError(f"The stream of {what} ended early (the container or the server went away)")


def _map_results(path: str, params: dict[str, str], body: bytes, what: str, order_outputs: bool,
                 return_exceptions: bool) -> Iterator[Any]:
    reader = FrameReader()
    waiting: dict[int, tuple[bool, Any]] = {}
    next_index = 0

    def value(ok: bool, result: Any) -> Any:
        if ok or return_exceptions:
            return result
        raise result

    with control_plane().stream("POST", path, params=params, content=body) as response:
        for chunk in response.iter_raw():
            for item in reader.feed(chunk):
                if item.kind == KIND_DONE:
                    return
                ok = item.kind == KIND_OK
                result = loads_result(item.payload, what) if ok else exception_from(item.payload, what)
                if not order_outputs:
                    yield value(ok, result)
                    continue
                waiting[item.index] = (ok, result)
                while next_index in waiting:
                    yield value(*waiting.pop(next_index))
                    next_index += 1
    raise ExecutionError(f"The results of {what}.map() ended early (the server went away)")


class RemoteFunction(CallMethods):
    """A function of a deployed app, found by name (`Function.from_name`)."""

    def __init__(self, app_name: str, tag: str, environment: str | None = None) -> None:
        self.app_name = app_name
        self.tag = tag
        self.environment = environment

    def _target(self) -> tuple[str, str, str]:
        return self.app_name, self.environment or current_environment(), self.tag

    def __repr__(self) -> str:
        return f"Function.from_name({self.app_name!r}, {self.tag!r})"


class RemoteCls:
    """A class of a deployed app (`Cls.from_name`); `RemoteCls()` gives an object whose methods call it."""

    def __init__(self, app_name: str, name: str, environment: str | None = None) -> None:
        self.app_name = app_name
        self.name = name
        self.environment = environment

    def __call__(self, *args: Any, **kwargs: Any) -> MethodsOf:
        if args or kwargs:
            raise InvalidError(f"{self.name}(...) with arguments: parametrized classes are not supported")
        return MethodsOf(
            lambda method: RemoteFunction(self.app_name, f"{self.name}.{method}", self.environment))

    def __repr__(self) -> str:
        return f"Cls.from_name({self.app_name!r}, {self.name!r})"


class MethodsOf:
    """An instance of a registered or deployed class: each attribute is a method that can be called."""

    def __init__(self, lookup: Callable[[str], CallMethods]) -> None:
        self._lookup = lookup

    def __getattr__(self, method: str) -> CallMethods:
        if method.startswith("_"):
            raise AttributeError(method)
        return self._lookup(method)


def bound_app(name: str | None, app_id: str | None) -> tuple[str | None, str | None]:
    """(name, id) of the app this process runs as: the container's app, else the given ones."""
    if os.environ.get("SHIPYARD_APP_NAME"):
        return os.environ["SHIPYARD_APP_NAME"], os.environ.get("SHIPYARD_APP_ID")
    return name, app_id
