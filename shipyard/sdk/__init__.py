"""The SDK: decorators and objects that describe an app. Importing an app file records specs; nothing runs."""

from ._alias import install_modal_alias
from ._app import App
from ._calls import FunctionCall
from ._cls import Cls
from ._dict import Dict
from ._function import Function, Retries
from ._image import Image
from ._loader import build_deploy_request, import_app_module, load_app
from ._schedule import Cron, Period
from ._secret import Secret
from ._volume import Volume
from ._web import (
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

__all__ = [
    "App",
    "Cls",
    "Cron",
    "Dict",
    "Function",
    "FunctionCall",
    "Image",
    "Period",
    "Retries",
    "Secret",
    "Volume",
    "asgi_app",
    "build_deploy_request",
    "concurrent",
    "enter",
    "exit",
    "fastapi_endpoint",
    "import_app_module",
    "install_modal_alias",
    "load_app",
    "method",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
