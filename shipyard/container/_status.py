"""Reports the container's progress to the runtime, one JSON object per line on a pipe."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

STATUS_FD_ENV = "SHIPYARD_STATUS_FD"


class StatusReporter:
    """Writes phase/ready/failed events on the fd named by `SHIPYARD_STATUS_FD`.

    Without that variable (a container started by hand) the events go to stderr, so that they still
    reach someone.
    """

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        if fd is not None:
            # The user's server processes must not hold the pipe open: the runtime reads EOF as our exit.
            os.set_inheritable(fd, False)

    @classmethod
    def from_env(cls) -> StatusReporter:
        raw = os.environ.pop(STATUS_FD_ENV, None)
        return cls(int(raw) if raw else None)

    def phase(self, name: str, seconds: float) -> None:
        self._emit({"event": "phase", "name": name, "seconds": round(seconds, 6)})

    def ready(self) -> None:
        self._emit({"event": "ready"})

    def failed(self, error: str) -> None:
        self._emit({"event": "failed", "error": error})

    def _emit(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event) + "\n").encode()
        if self._fd is None:
            sys.stderr.write(f"shipyard-status: {line.decode()}")
            sys.stderr.flush()
            return
        try:
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            # The runtime went away; the event is lost but the logs keep a trace of it.
            print(f"shipyard: cannot report {event['event']!r} on fd {self._fd}: {exc}", file=sys.stderr)
