"""Imported by an endpoint's container: serves the engine's OpenAI server.

The endpoint's generated app file re-exports `serve`, a `web_server` function that runs the engine as
its own process on loopback (vLLM, SGLang), and `serve_app`, an `asgi_app` function for engines that
are a Python ASGI app (llama.cpp): the container's own server serves that app, with no loopback hop.
The engine argv arrives in `SHIPYARD_ENGINE_ARGV` and any Hub token in `HF_TOKEN` (the environment,
never argv).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..exceptions import ContainerError

ENGINE_PORT = 8000
ARGV_ENV = "SHIPYARD_ENGINE_ARGV"
# Once serving, a dead engine takes the container down so that the platform replaces it.
_EXIT_DELAY_S = 2.0


class _EngineFunction:
    """What the container entrypoint looks for on the app module: an object with `raw_f`."""

    def __init__(self, raw_f: Callable[[], Any]) -> None:
        self.raw_f = raw_f


def _engine_argv() -> list[str]:
    argv: list[str] = json.loads(os.environ[ARGV_ENV])
    print(f"starting engine: {argv[0] if argv[0] != sys.executable else 'python'} {' '.join(argv[1:])}",
          flush=True)
    return argv


def run_engine() -> Any:
    process = subprocess.Popen(_engine_argv(), stdin=subprocess.DEVNULL)
    code = process.wait()
    threading.Timer(_EXIT_DELAY_S, os._exit, (1,)).start()
    raise RuntimeError(f"the inference engine exited with status {code}; see the log above")


def engine_app() -> Any:
    """The ASGI app of an in-process engine: argv `python -m MODULE ARGS`, MODULE.create_app(ARGS)."""
    argv = _engine_argv()
    if len(argv) < 3 or argv[1] != "-m":
        raise ContainerError(f"an in-process engine runs as `python -m MODULE ...`, not {argv[:3]}")
    module = importlib.import_module(argv[2])
    create_app: Callable[[list[str]], Any] | None = getattr(module, "create_app", None)
    if create_app is None:
        raise ContainerError(f"engine module {argv[2]} has no create_app(args) to serve in process")
    return create_app(argv[3:])


serve = _EngineFunction(run_engine)
serve_app = _EngineFunction(engine_app)
