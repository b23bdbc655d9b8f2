"""Shipyard: run Python functions and web apps as autoscaling HTTP endpoints on your own machines."""

from .exceptions import (
    AuthError,
    ContainerError,
    ExecutionError,
    ImageBuildError,
    InvalidError,
    NotFoundError,
    ServerError,
    ShipyardError,
)
from .sdk import (
    App,
    Cls,
    Function,
    Image,
    Secret,
    Volume,
    asgi_app,
    concurrent,
    enter,
    exit,
    fastapi_endpoint,
    method,
    web_endpoint,
    web_server,
    wsgi_app,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "AuthError",
    "Cls",
    "ContainerError",
    "ExecutionError",
    "Function",
    "Image",
    "ImageBuildError",
    "InvalidError",
    "NotFoundError",
    "Secret",
    "ServerError",
    "ShipyardError",
    "Volume",
    "__version__",
    "asgi_app",
    "concurrent",
    "enter",
    "exit",
    "fastapi_endpoint",
    "method",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
