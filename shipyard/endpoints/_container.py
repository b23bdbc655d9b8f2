"""Imported by an endpoint's container: runs the engine's OpenAI server on loopback.

The endpoint's generated app file re-exports `serve`, a `web_server` function; its argv arrives in
`SHIPYARD_ENGINE_ARGV` and any Hub token in `HF_TOKEN` (the environment, never argv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

ENGINE_PORT = 8000
ARGV_ENV = "SHIPYARD_ENGINE_ARGV"
# Once serving, a dead engine takes the container down so that the platform replaces it.
_EXIT_DELAY_S = 2.0


class _EngineFunction:
    """What the container entrypoint looks for on the app module: an object with `raw_f`."""

    def __init__(self) -> None:
        self.raw_f = run_engine


def run_engine() -> Any:
    argv = json.loads(os.environ[ARGV_ENV])
    print(f"starting engine: {argv[0] if argv[0] != sys.executable else 'python'} {' '.join(argv[1:])}",
          flush=True)
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    code = process.wait()
    threading.Timer(_EXIT_DELAY_S, os._exit, (1,)).start()
    raise RuntimeError(f"the inference engine exited with status {code}; see the log above")


serve = _EngineFunction()
