"""App logs: one file per container (written by the runtime) plus the platform's own events.

Every line starts with a UTC ISO timestamp, so merging files is a sort on the line text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

PLATFORM_LOG = "platform.log"


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class AppLogs:
    def __init__(self, logs_dir: Path) -> None:
        self._dir = logs_dir

    def app_dir(self, app_id: str) -> Path:
        path = self._dir / app_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def container_log(self, app_id: str, container_id: str) -> Path:
        return self.app_dir(app_id) / f"{container_id}.log"

    def platform(self, app_id: str, message: str) -> None:
        with (self.app_dir(app_id) / PLATFORM_LOG).open("a", encoding="utf-8") as log:
            log.write(f"{timestamp()} shipyard system| {message}\n")

    def _read_new(self, app_id: str, offsets: dict[Path, int]) -> list[str]:
        lines: list[str] = []
        for path in sorted(self.app_dir(app_id).glob("*.log")):
            start = offsets.get(path, 0)
            with path.open("rb") as log:
                log.seek(start)
                data = log.read()
            complete = data[: data.rfind(b"\n") + 1]
            offsets[path] = start + len(complete)
            lines.extend(complete.decode("utf-8", "replace").splitlines(keepends=True))
        lines.sort()
        return lines

    async def stream(self, app_id: str, *, follow: bool, poll: float = 0.2) -> AsyncIterator[str]:
        offsets: dict[Path, int] = {}
        while True:
            for line in await asyncio.to_thread(self._read_new, app_id, offsets):
                yield line
            if not follow:
                return
            await asyncio.sleep(poll)
