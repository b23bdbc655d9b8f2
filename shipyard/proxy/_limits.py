"""Admission limits of the data plane: the workspace rate limit, queue bounds and the body cap."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Message, Receive

from ..exceptions import InvalidError


@dataclass(frozen=True)
class ProxyLimits:
    rate_per_second: float = 200.0
    """Workspace-wide requests per second; 0 turns the rate limit off."""
    burst_seconds: float = 5.0
    """How many seconds' worth of requests may arrive at once after a quiet period."""
    max_queue: int = 1000
    """Requests that may wait for a container slot, per function; more get 503."""
    max_body_bytes: int = 256 * 1024 * 1024
    """Largest request body forwarded to a container; bigger ones get 413."""

    def __post_init__(self) -> None:
        if self.rate_per_second < 0 or self.burst_seconds <= 0:
            raise InvalidError("the rate limit must be >= 0 requests/s with a burst of > 0 s")
        if self.max_queue < 0 or self.max_body_bytes < 0:
            raise InvalidError("the queue bound and the body cap must not be negative")


class TokenBucket:
    """`rate` tokens per second, holding at most `capacity`; starts full."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be available."""
        now = self._clock()
        tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self.rate


class RateLimiter:
    """The workspace rate limit (one bucket: a server serves one workspace)."""

    def __init__(self, limits: ProxyLimits, clock: Callable[[], float] = time.monotonic) -> None:
        rate = limits.rate_per_second
        self._bucket = TokenBucket(rate, rate * limits.burst_seconds, clock) if rate > 0 else None

    def retry_after(self) -> int | None:
        """None when the request may pass, else whole seconds to put in `Retry-After` (at least 1)."""
        if self._bucket is None:
            return None
        wait = self._bucket.take()
        return None if wait == 0.0 else max(1, math.ceil(wait))


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body larger than the limit of {limit} bytes")
        self.limit = limit


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def capped_receive(receive: Receive, limit: int) -> Receive:
    """`receive` that raises BodyTooLarge once more than `limit` body bytes have streamed through."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped
