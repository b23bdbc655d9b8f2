"""`Cls`: what `@app.cls` returns; holds the user's class and one `Function` per web or `@method` method."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidError
from ._attrs import CONCURRENT_ATTR, ENTER_ATTR, EXIT_ATTR, METHOD_ATTR, WEB_ATTR, Registered
from ._calls import MethodsOf, RemoteCls
from ._function import Function, FunctionOptions
from ._web import required_parameters

if TYPE_CHECKING:
    from ._app import App


def _class_functions(user_cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Plain functions defined on the class and its bases, in definition order, subclasses winning."""
    found: dict[str, Callable[..., Any]] = {}
    for klass in reversed(user_cls.__mro__[:-1]):
        for name, value in vars(klass).items():
            if inspect.isfunction(value):
                found[name] = value
            else:
                found.pop(name, None)
    yield from found.items()


class Cls(Registered):
    """A registered class of an `App`. `.user_cls` is the user's class."""

    decorator = "@app.cls()"

    def __init__(self, app: App, user_cls: type, options: FunctionOptions) -> None:
        self.app = app
        self.user_cls = user_cls
        self.name = user_cls.__name__
        self.__doc__ = user_cls.__doc__
        autoscaler = options.with_concurrency(user_cls, f"Class {self.name}")
        self.functions: dict[str, Function] = {}
        for attr, fn in _class_functions(user_cls):
            where = f"{self.name}.{attr}"
            if getattr(fn, CONCURRENT_ATTR, None) is not None:
                raise InvalidError(
                    f"`@concurrent` cannot be applied to the method {where}: apply it to the class, below "
                    "`@app.cls()`."
                )
            if getattr(fn, ENTER_ATTR, False) or getattr(fn, EXIT_ATTR, False):
                required = required_parameters(fn)
                if required:
                    raise InvalidError(
                        f"Lifecycle method {where} takes parameters ({', '.join(required)}); "
                        "@enter/@exit methods take only self."
                    )
            web = getattr(fn, WEB_ATTR, None)
            if web is None and not getattr(fn, METHOD_ATTR, False):
                continue
            self.functions[attr] = Function(
                app, fn, tag=where, qualname=self.name, options=options, autoscaler=autoscaler, web=web,
                cls_name=self.name, method_name=attr,
            )

    def __call__(self, *args: Any, **kwargs: Any) -> MethodsOf:
        """An object whose `@method()`s run in the class's containers: `Model().predict.remote(x)`."""
        if args or kwargs:
            raise InvalidError(
                f"{self.name}(...) with arguments: parametrized classes are not supported; set the values "
                "in an @enter() method instead."
            )

        def lookup(method: str) -> Function:
            function = self.functions.get(method)
            if function is None:
                raise AttributeError(f"{self.name} has no @method() or web method named {method!r}")
            return function

        return MethodsOf(lookup)

    @classmethod
    def from_name(cls, app_name: str, name: str, *, environment_name: str | None = None) -> RemoteCls:
        """A class of a deployed app: `Cls.from_name("app", "Model")().predict.remote(x)`."""
        return RemoteCls(app_name, name, environment_name)

    def __repr__(self) -> str:
        return f"Cls({self.name!r})"
