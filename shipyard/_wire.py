"""The byte format of function calls, shared by the SDK, the control plane and the container.

Arguments and results are cloudpickled. A call's answer is one *outcome*: `ok` with the pickled result,
or `error` with a pickled `RemoteFailure`. Streams (generator calls, `.map`) are sequences of frames: a
kind byte, the input index and the payload length, then the payload.
"""

from __future__ import annotations

import struct
import traceback
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .exceptions import ExecutionError, InvalidError

CALL_PATH = "/__shipyard/call"
GEN_PATH = "/__shipyard/call_gen"
OUTCOME_HEADER = "x-shipyard-outcome"
CONTENT_TYPE = "application/x-shipyard-pickle"
OK = "ok"
ERROR = "error"

KIND_OK = b"o"
KIND_ERROR = b"e"
KIND_INPUT = b"i"
KIND_DONE = b"d"
"""Ends a generator's stream: a stream without it was cut short."""
_HEADER = struct.Struct(">cIQ")


@dataclass(frozen=True)
class Frame:
    kind: bytes
    index: int
    payload: bytes


def frame(kind: bytes, index: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, index, len(payload)) + payload


class FrameReader:
    """Splits a byte stream into frames, whatever the chunk boundaries."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            kind, index, length = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(kind, index, bytes(self._buffer[_HEADER.size:end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> bool:
        return bool(self._buffer)


def dumps_args(what: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle call arguments before anything is sent, so that a bad argument fails in the caller."""
    try:
        payload: bytes = cloudpickle.dumps((args, kwargs))
    except Exception as exc:
        raise InvalidError(f"Cannot send the arguments of {what}: they cannot be pickled ({exc!r}). "
                           "Nothing was sent.") from None
    return payload


@dataclass
class RemoteFailure:
    """An exception raised by a call: the exception itself when it pickles, its text and traceback always."""

    exception: BaseException | None
    description: str
    traceback: str


def failure_payload(exc: BaseException, tb: str | None = None) -> bytes:
    text = tb if tb is not None else "".join(traceback.format_exception(exc))
    description = "".join(traceback.format_exception_only(exc)).strip()
    try:
        payload: bytes = cloudpickle.dumps(RemoteFailure(exc, description, text))
    except Exception:  # an exception that does not pickle still reports its text
        payload = cloudpickle.dumps(RemoteFailure(None, description, text))
    return payload


def platform_failure(exc: BaseException) -> bytes:
    """A failure of the platform (a crash, a timeout) in the form of a call's failure."""
    return failure_payload(exc, tb="")


def exception_from(payload: bytes, what: str) -> BaseException:
    """The exception to raise in the caller, with the remote traceback attached as a note."""
    try:
        failure = cloudpickle.loads(payload)
    except Exception as exc:
        return ExecutionError(f"{what} failed, and its error cannot be read here: {exc!r}")
    if not isinstance(failure, RemoteFailure):
        return ExecutionError(f"{what} failed with an unreadable error")
    raised = failure.exception
    if raised is None:
        return ExecutionError(f"{what} raised {failure.description}\n{failure.traceback}".rstrip())
    if failure.traceback:
        raised.add_note(f"Remote traceback ({what}):\n{failure.traceback.rstrip()}")
    return raised


def loads_result(payload: bytes, what: str) -> Any:
    try:
        return cloudpickle.loads(payload)
    except Exception as exc:
        raise ExecutionError(f"The result of {what} cannot be unpickled here: {exc!r}") from None
