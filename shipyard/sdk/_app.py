"""`App`: a named group of functions and classes, collected by decorators at import time."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._labels import default_label, validate_object_name
from ..exceptions import InvalidError
from ._attrs import WEB_ATTR, Registered
from ._cls import Cls
from ._function import Function, FunctionOptions, parse_volumes
from ._image import Image
from ._secret import Secret
from ._web import forgot_parentheses


def _check_global(obj: Any, decorator: str) -> str:
    qualname: str = getattr(obj, "__qualname__", "")
    if not qualname or "." in qualname:
        kind = "class" if isinstance(obj, type) else "function"
        raise InvalidError(
            f"`{decorator}` needs a {kind} defined at the top level of the app file, but {qualname or obj!r} "
            "is defined inside another function or class. Move it to module level."
            + (" For methods, decorate the class with `@app.cls()`." if kind == "function" else "")
        )
    return qualname


class App:
    """A deployable group of functions. Decorators only record specs: nothing runs at import."""

    def __init__(
        self,
        name: str | None = None,
        *,
        image: Image | None = None,
        secrets: Sequence[Secret] | None = None,
        volumes: Mapping[str, object] | None = None,
    ) -> None:
        if name is not None:
            validate_object_name(name, "app")
        if image is not None and not isinstance(image, Image):
            raise InvalidError(f"image= takes an Image (for example Image.debian_slim()), not {image!r}.")
        for secret in secrets or []:
            if not isinstance(secret, Secret):
                raise InvalidError(f"secrets= takes a list of Secret objects, not {secret!r}.")
        self.volumes = parse_volumes(volumes)
        self._name = name
        self.bound_name: str | None = None
        """The name the app runs under in `shipyard run` (it may differ from `name`)."""
        self.bound_environment: str | None = None
        self.bound_id: str | None = None
        self.local_entrypoints: dict[str, Callable[..., Any]] = {}
        self.image = image
        self.secrets: list[Secret] = list(secrets or [])
        self.registered_functions: dict[str, Function] = {}
        self.registered_classes: dict[str, Cls] = {}

    @property
    def name(self) -> str | None:
        return self._name

    def __repr__(self) -> str:
        return f"App({self._name!r})"

    def web_labels(self, app_name: str | None = None) -> dict[str, str]:
        """Label → tag of every web function. Default labels need an app name and are left out without one.

        Raises `InvalidError` if two functions would share a label.
        """
        name = app_name or self._name
        labels: dict[str, str] = {}
        for tag, fn in self.registered_functions.items():
            if fn.web is None:
                continue
            label = fn.web.label
            if label is None:
                if name is None:
                    continue
                label = default_label(name, tag)
            if label in labels:
                raise InvalidError(
                    f"Functions {labels[label]} and {tag} both use the web label {label!r}; "
                    "labels must be unique within an app. Pass a different label= to one of them."
                )
            labels[label] = tag
        return labels

    def _register(self, functions: Sequence[Function]) -> None:
        for fn in functions:
            if fn.tag in self.registered_functions:
                raise InvalidError(
                    f"App already has a function named {fn.tag!r}; function names must be unique."
                )
        previous = dict(self.registered_functions)
        self.registered_functions.update((fn.tag, fn) for fn in functions)
        try:
            self.web_labels()
        except InvalidError:
            self.registered_functions = previous
            raise

    def function(
        self,
        _warn_parentheses_missing: object = None,
        *,
        image: Image | None = None,
        secrets: Sequence[Secret] | None = None,
        env: Mapping[str, str] | None = None,
        gpu: str | Sequence[str] | None = None,
        cpu: float | None = None,
        region: str | None = None,
        memory: int | None = None,
        timeout: float = 300,
        startup_timeout: float | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int = 0,
        scaledown_window: float | None = None,
        volumes: Mapping[str, object] | None = None,
        retries: object = None,
        schedule: object = None,
        keep_warm: int | None = None,
        concurrency_limit: int | None = None,
        container_idle_timeout: float | None = None,
        allow_concurrent_inputs: int | None = None,
    ) -> Callable[[Callable[..., Any]], Function]:
        """Register a module-level function. Defaults: min_containers=0, scaledown_window=60 seconds.

        `retries=` applies to calls from Python (`.remote`, `.spawn`, `.map`); web requests are never retried.
        """
        if _warn_parentheses_missing is not None:
            raise forgot_parentheses("app.function")
        options = FunctionOptions.parse(
            image=image, secrets=secrets, env=env, gpu=gpu, cpu=cpu, region=region, memory=memory,
            timeout=timeout,
            startup_timeout=startup_timeout, min_containers=min_containers, max_containers=max_containers,
            buffer_containers=buffer_containers, scaledown_window=scaledown_window, volumes=volumes,
            schedule=schedule, retries=retries, keep_warm=keep_warm, concurrency_limit=concurrency_limit,
            container_idle_timeout=container_idle_timeout, allow_concurrent_inputs=allow_concurrent_inputs,
        )

        def wrapper(raw_f: Callable[..., Any]) -> Function:
            if isinstance(raw_f, Registered):
                raise InvalidError(f"{raw_f!r} is already registered: apply `@app.function()` only once.")
            if isinstance(raw_f, type):
                raise InvalidError(
                    f"`@app.function()` cannot decorate the class {raw_f.__name__}: use `@app.cls()`."
                )
            if not callable(raw_f):
                raise InvalidError(f"`@app.function()` decorates functions, not {raw_f!r}.")
            qualname = _check_global(raw_f, "@app.function()")
            fn = Function(
                self, raw_f, tag=qualname, qualname=qualname, options=options,
                autoscaler=options.with_concurrency(raw_f, f"Function {qualname}"),
                web=getattr(raw_f, WEB_ATTR, None),
            )
            self._register([fn])
            return fn

        return wrapper

    def local_entrypoint(
        self, _warn_parentheses_missing: object = None, *, name: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Mark a function that `shipyard run FILE` calls in the local process while the app runs."""
        if _warn_parentheses_missing is not None:
            raise forgot_parentheses("app.local_entrypoint")

        def wrapper(raw_f: Callable[..., Any]) -> Callable[..., Any]:
            if isinstance(raw_f, Registered) or not callable(raw_f):
                raise InvalidError(f"`@app.local_entrypoint()` decorates a plain function, not {raw_f!r}.")
            tag = name or _check_global(raw_f, "@app.local_entrypoint()")
            if tag in self.local_entrypoints or tag in self.registered_functions:
                raise InvalidError(f"App already has a function or entrypoint named {tag!r}.")
            self.local_entrypoints[tag] = raw_f
            return raw_f

        return wrapper

    def cls(
        self,
        _warn_parentheses_missing: object = None,
        *,
        image: Image | None = None,
        secrets: Sequence[Secret] | None = None,
        env: Mapping[str, str] | None = None,
        gpu: str | Sequence[str] | None = None,
        cpu: float | None = None,
        region: str | None = None,
        memory: int | None = None,
        timeout: float = 300,
        startup_timeout: float | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int = 0,
        scaledown_window: float | None = None,
        volumes: Mapping[str, object] | None = None,
        retries: object = None,
        schedule: object = None,
        keep_warm: int | None = None,
        concurrency_limit: int | None = None,
        container_idle_timeout: float | None = None,
        allow_concurrent_inputs: int | None = None,
    ) -> Callable[[type], Cls]:
        """Register a class: its web methods become web functions sharing the class's containers."""
        if _warn_parentheses_missing is not None:
            raise forgot_parentheses("app.cls")
        options = FunctionOptions.parse(
            image=image, secrets=secrets, env=env, gpu=gpu, cpu=cpu, region=region, memory=memory,
            timeout=timeout,
            startup_timeout=startup_timeout, min_containers=min_containers, max_containers=max_containers,
            buffer_containers=buffer_containers, scaledown_window=scaledown_window, volumes=volumes,
            schedule=schedule, retries=retries, keep_warm=keep_warm, concurrency_limit=concurrency_limit,
            container_idle_timeout=container_idle_timeout, allow_concurrent_inputs=allow_concurrent_inputs,
        )

        def wrapper(user_cls: type) -> Cls:
            if isinstance(user_cls, Registered):
                raise InvalidError(f"{user_cls!r} is already registered: apply `@app.cls()` only once.")
            if not isinstance(user_cls, type):
                raise InvalidError(
                    f"`@app.cls()` decorates classes, not {user_cls!r}: use `@app.function()`."
                )
            name = _check_global(user_cls, "@app.cls()")
            if name in self.registered_classes:
                raise InvalidError(f"App already has a class named {name!r}; class names must be unique.")
            registered = Cls(self, user_cls, options)
            self._register(list(registered.functions.values()))
            self.registered_classes[name] = registered
            return registered

        return wrapper
