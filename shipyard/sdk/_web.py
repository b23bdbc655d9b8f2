"""Decorators that mark a function before `@app.function`/`@app.cls` registers it.

Each one only sets an attribute on the user's function (or class) and returns it unchanged, so the
container finds the raw callable and its configuration by plain attribute access.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .._labels import validate_label
from ..exceptions import InvalidError
from ..spec import WebConfig, WebKind
from ._attrs import CONCURRENT_ATTR, ENTER_ATTR, EXIT_ATTR, METHOD_ATTR, WEB_ATTR, Registered

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def forgot_parentheses(name: str) -> InvalidError:
    return InvalidError(
        f"Positional arguments are not allowed. Did you forget parentheses? Suggestion: `@{name}()`."
    )


def _misplaced(decorator: str, obj: Registered) -> InvalidError:
    return InvalidError(
        f"`{decorator}` was applied on top of `{obj.decorator}`, but decorators apply bottom-up and "
        f"`{obj.decorator}` must come last. Put `{obj.decorator}` first (outermost), then `{decorator}`:\n\n"
        f"    {obj.decorator}\n    {decorator}\n    def ...\n"
    )


def _check_plain_function(decorator: str, obj: object) -> None:
    if isinstance(obj, Registered):
        raise _misplaced(decorator, obj)
    if isinstance(obj, type) or not callable(obj):
        raise InvalidError(f"`{decorator}` applies to a function, not to {obj!r}.")


def required_parameters(fn: Callable[..., Any]) -> list[str]:
    """Parameters a caller must pass, besides a method's `self`."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    if params and params[0].name == "self":
        params = params[1:]
    return [
        p.name for p in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _web_decorator(decorator: str, config: WebConfig) -> Callable[[F], F]:
    if config.label is not None:
        validate_label(config.label)

    def wrapper(raw_f: F) -> F:
        _check_plain_function(decorator, raw_f)
        name = getattr(raw_f, "__qualname__", repr(raw_f))
        if inspect.isgeneratorfunction(raw_f) or inspect.isasyncgenfunction(raw_f):
            raise InvalidError(
                f"`{decorator}` cannot wrap {name}: web functions cannot be generators. Return a "
                "response instead (for streaming, return a fastapi.responses.StreamingResponse)."
            )
        if getattr(raw_f, METHOD_ATTR, False):
            raise InvalidError(
                f"Web methods must not be wrapped by `@method()`: remove `@method()` from {name}."
            )
        if config.kind != WebKind.FASTAPI_ENDPOINT:
            required = required_parameters(raw_f)
            if required:
                raise InvalidError(
                    f"`{decorator}` cannot wrap {name}: the function takes parameters "
                    f"({', '.join(required)}), but it is called with none when the container starts. "
                    "Remove the parameters."
                )
        existing = getattr(raw_f, WEB_ATTR, None)
        if existing is not None:
            raise InvalidError(f"{name} already has a web decorator ({existing.kind}); use only one.")
        setattr(raw_f, WEB_ATTR, config)
        return raw_f

    return wrapper


def fastapi_endpoint(
    _warn_parentheses_missing: object = None,
    *,
    method: str = "GET",
    label: str | None = None,
    docs: bool = False,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Serve the function as a single FastAPI route; query parameters and JSON bodies become arguments."""
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("fastapi_endpoint")
    verb = method.upper() if isinstance(method, str) else method
    if verb not in _HTTP_METHODS:
        raise InvalidError(f"Invalid HTTP method {method!r}: use one of {', '.join(sorted(_HTTP_METHODS))}.")
    config = WebConfig(
        kind=WebKind.FASTAPI_ENDPOINT, method=verb, label=label, docs=docs,
        requires_proxy_auth=requires_proxy_auth,
    )
    return _web_decorator("@fastapi_endpoint()", config)


def web_endpoint(
    _warn_parentheses_missing: object = None,
    *,
    method: str = "GET",
    label: str | None = None,
    docs: bool = False,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """The older name of `fastapi_endpoint`."""
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("web_endpoint")
    return fastapi_endpoint(method=method, label=label, docs=docs, requires_proxy_auth=requires_proxy_auth)


def asgi_app(
    _warn_parentheses_missing: object = None,
    *,
    label: str | None = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Serve the ASGI application the (parameterless) function returns."""
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("asgi_app")
    config = WebConfig(kind=WebKind.ASGI_APP, label=label, requires_proxy_auth=requires_proxy_auth)
    return _web_decorator("@asgi_app()", config)


def wsgi_app(
    _warn_parentheses_missing: object = None,
    *,
    label: str | None = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Serve the WSGI application the (parameterless) function returns."""
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("wsgi_app")
    config = WebConfig(kind=WebKind.WSGI_APP, label=label, requires_proxy_auth=requires_proxy_auth)
    return _web_decorator("@wsgi_app()", config)


def web_server(
    port: int,
    *,
    startup_timeout: float = 5.0,
    label: str | None = None,
    requires_proxy_auth: bool = False,
) -> Callable[[F], F]:
    """Route requests to a server the (parameterless) function starts on `port` inside the container."""
    if callable(port):
        raise InvalidError(
            "`@web_server` needs the port the server listens on. Did you forget parentheses? "
            "Suggestion: `@web_server(8000)`."
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidError(f"Invalid port {port!r} for `@web_server`: use an integer from 1 to 65535.")
    if startup_timeout <= 0:
        raise InvalidError(f"Invalid startup_timeout {startup_timeout!r}: it must be positive.")
    config = WebConfig(
        kind=WebKind.WEB_SERVER, port=port, startup_timeout=float(startup_timeout), label=label,
        requires_proxy_auth=requires_proxy_auth,
    )
    return _web_decorator(f"@web_server({port})", config)


def concurrent(
    _warn_parentheses_missing: object = None,
    *,
    max_inputs: int | None = None,
    target_inputs: int | None = None,
) -> Callable[[T], T]:
    """Let one container handle up to `max_inputs` requests at once; autoscale towards `target_inputs`."""
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("concurrent")
    if max_inputs is None:
        raise InvalidError("`@concurrent` needs max_inputs=, for example `@concurrent(max_inputs=10)`.")
    if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1:
        raise InvalidError(f"Invalid max_inputs {max_inputs!r}: it must be an integer of at least 1.")
    if target_inputs is not None and (
        isinstance(target_inputs, bool) or not isinstance(target_inputs, int)
        or not 1 <= target_inputs <= max_inputs
    ):
        raise InvalidError(
            f"Invalid target_inputs {target_inputs!r}: it must be an integer from 1 to max_inputs "
            f"({max_inputs})."
        )
    settings = (max_inputs, target_inputs)

    def wrapper(obj: T) -> T:
        if isinstance(obj, Registered):
            raise _misplaced("@concurrent(...)", obj)
        if not callable(obj):
            raise InvalidError(f"`@concurrent` applies to a function or a class, not to {obj!r}.")
        setattr(obj, CONCURRENT_ATTR, settings)
        return obj

    return wrapper


def _lifecycle(decorator: str, attr: str) -> Callable[[F], F]:
    def wrapper(raw_f: F) -> F:
        _check_plain_function(decorator, raw_f)
        setattr(raw_f, attr, True)
        return raw_f

    return wrapper


def enter(_warn_parentheses_missing: object = None, *, snap: bool = False) -> Callable[[F], F]:
    """Mark a method of an `@app.cls` class to run once when a container starts, before it serves.

    `snap` is accepted for compatibility; without memory snapshots every hook runs at container start.
    """
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("enter")
    return _lifecycle("@enter()", ENTER_ATTR)


def exit(_warn_parentheses_missing: object = None) -> Callable[[F], F]:
    """Mark a method of an `@app.cls` class to run once when a container stops."""
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("exit")
    return _lifecycle("@exit()", EXIT_ATTR)


def method(_warn_parentheses_missing: object = None) -> Callable[[F], F]:
    """Mark a plain (non-web) method of an `@app.cls` class as one of its functions."""
    if _warn_parentheses_missing is not None:
        raise forgot_parentheses("method")

    def wrapper(raw_f: F) -> F:
        _check_plain_function("@method()", raw_f)
        if getattr(raw_f, WEB_ATTR, None) is not None:
            raise InvalidError(
                "Web methods must not be wrapped by `@method()`: remove `@method()` from "
                f"{getattr(raw_f, '__qualname__', raw_f)!r}."
            )
        setattr(raw_f, METHOD_ATTR, True)
        return raw_f

    return wrapper
