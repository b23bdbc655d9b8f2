"""Container output capture: every stdout/stderr line goes to the container's log file, live."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections import deque
from typing import IO, Literal, TextIO

Stream = Literal["stdout", "stderr"]

_CHUNK = 64 * 1024
# A line longer than this is written in pieces, so one endless line cannot exhaust memory.
_MAX_LINE = 256 * 1024
TAIL_LINES = 20


def log_timestamp(now: dt.datetime | None = None) -> str:
    moment = now or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def format_log_line(container_id: str, stream: Stream, line: str, now: dt.datetime | None = None) -> str:
    return f"{log_timestamp(now)} {container_id} {stream}| {line}\n"


class LogSink:
    """Appends one container's lines to its log file and remembers the last stderr lines.

    A spare (no container yet) has no file: what it prints before it is handed a container goes to the
    server's log, and from `retarget` on everything goes to that container's file.
    """

    def __init__(self, container_id: str, file: TextIO | None) -> None:
        self.container_id = container_id
        self._file = file
        self.stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)

    def retarget(self, container_id: str, file: TextIO) -> None:
        self.container_id = container_id
        self._file = file

    def write(self, stream: Stream, line: str) -> None:
        if stream == "stderr":
            self.stderr_tail.append(line)
        if self._file is None:
            logging.getLogger("shipyard.runtime").warning("%s %s| %s", self.container_id, stream, line)
            return
        if self._file.closed:
            return
        # Small per-line appends with a flush: `app logs --follow` sees each line as it happens.
        self._file.write(format_log_line(self.container_id, stream, line))
        self._file.flush()

    def last_stderr_line(self) -> str | None:
        return next((line for line in reversed(self.stderr_tail) if line.strip()), None)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def pump(pipe: IO[bytes], sink: LogSink, stream: Stream) -> None:
    """Copy the pipe to `sink` line by line until EOF; closes the pipe."""
    reader, transport = await open_pipe_reader(pipe)
    pending = b""
    try:
        while chunk := await reader.read(_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                sink.write(stream, _decode(raw))
            while len(pending) > _MAX_LINE:
                sink.write(stream, _decode(pending[:_MAX_LINE]))
                pending = pending[_MAX_LINE:]
    finally:
        transport.close()
        if pending:
            sink.write(stream, _decode(pending))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


async def open_pipe_reader(
    pipe: int | IO[bytes], *, limit: int = _CHUNK
) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    """Read a pipe (fd or file) without blocking the loop; closing the transport closes the pipe."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    file = os.fdopen(pipe, "rb", buffering=0) if isinstance(pipe, int) else pipe
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), file)
    return reader, transport
