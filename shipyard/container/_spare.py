"""`python -m shipyard.container --spare`: a container started before it knows what it will run.

The runtime keeps one spare per image interpreter so that a cold start skips the process, sandbox and
interpreter start and the web stack's imports. The spare waits for one JSON payload on the fd named by
`SHIPYARD_SPARE_FD`: {"spec": ContainerSpec, "env": the container's whole environment, secrets
included}. Secrets never travel in argv or a file; the pipe is closed once read.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from time import perf_counter

from shipyard.spec import ContainerSpec

SPARE_FD_ENV = "SHIPYARD_SPARE_FD"


def preload() -> None:
    """Import what every web container needs, ahead of the request that starts it."""
    import cloudpickle  # noqa: F401
    import uvicorn.lifespan.off
    import uvicorn.loops.uvloop
    import uvicorn.protocols.http.httptools_impl
    import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401

    import shipyard.sdk._loader  # noqa: F401
    from shipyard.container._asgi import fastapi_endpoint_app
    from shipyard.spec import WebConfig, WebKind

    # FastAPI imports more (pydantic.v1 among them) on its first route: most of an endpoint's app start.
    fastapi_endpoint_app(_warm_up, WebConfig(kind=WebKind.FASTAPI_ENDPOINT))


async def _warm_up() -> str:
    return ""


def receive() -> tuple[ContainerSpec, float]:
    """Block until the runtime hands over a container; become it. Returns (spec, the time it came)."""
    fd = int(os.environ.pop(SPARE_FD_ENV))
    chunks = []
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    started_at = perf_counter()
    payload = json.loads(b"".join(chunks))
    spec = ContainerSpec.model_validate(payload["spec"])
    env: dict[str, str] = payload["env"]
    os.environ.clear()
    os.environ.update(env)
    # What the interpreter would have done with these at startup, had it been started for this spec.
    sys.path[:1] = [spec.workdir, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    os.chdir(spec.workdir)
    tempfile.tempdir = None
    return spec, started_at
