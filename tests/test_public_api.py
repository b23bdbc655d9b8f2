"""The public surface of `import shipyard` (and so of `import modal` through the alias)."""

from __future__ import annotations

import shipyard
from shipyard import exceptions


def test_all_is_exactly_the_public_surface() -> None:
    assert sorted(shipyard.__all__) == sorted([
        "App", "Function", "Cls",
        "fastapi_endpoint", "web_endpoint", "asgi_app", "wsgi_app", "web_server",
        "concurrent", "enter", "exit", "method",
        "Image", "Secret", "Volume", "Dict", "FunctionCall", "Period", "Cron", "Retries",
        "ShipyardError", "InvalidError", "NotFoundError", "AuthError", "ImageBuildError", "ContainerError",
        "ServerError", "ExecutionError", "FunctionTimeoutError",
        "__version__",
    ])
    for name in shipyard.__all__:
        assert hasattr(shipyard, name), name


def test_version() -> None:
    assert shipyard.__version__ == "0.1.0"


def test_exceptions_are_the_exceptions_module_classes() -> None:
    assert shipyard.InvalidError is exceptions.InvalidError
    assert issubclass(shipyard.ExecutionError, shipyard.ShipyardError)
