"""The one load generator of every benchmark: raw HTTP/1.1 keep-alive over asyncio (uvloop).

Closed loop: N connections, each sending its next request when the last answer ended (throughput
and latency at a concurrency). Open loop: requests at a fixed rate whatever the answers do, latency
counted from the scheduled send time (no coordinated omission). Every response's status is checked.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

# Like HTTP clients do, an idle pooled connection is reused only well within the server's keep-alive
# timeout; otherwise the server may close it while the request is on its way (a client-side race).
KEEP_ALIVE_REUSE_S = 3.0


@dataclass(frozen=True)
class Target:
    name: str
    host_header: str
    path: str = "/"
    port: int | None = None
    uds: str | None = None

    def request(self) -> bytes:
        head = f"GET {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: shipyard-bench\r\n\r\n"
        return head.encode()


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def failed(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.perf_counter()

    @property
    def stale(self) -> bool:
        """Closed by the server, or idle long enough that it may close it as we send (uvicorn: 5 s)."""
        return self.reader.at_eof() or time.perf_counter() - self.last_used > KEEP_ALIVE_REUSE_S

    @classmethod
    async def open(cls, target: Target) -> _Connection:
        if target.uds is not None:
            reader, writer = await asyncio.open_unix_connection(target.uds)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one request, read the whole response: (status, connection still usable)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        keep = b"connection: close" not in lower
        marker = lower.find(b"content-length:")
        if marker >= 0:
            end = lower.index(b"\r\n", marker)
            await self.reader.readexactly(int(lower[marker + 15 : end]))
        elif b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.read()
            keep = False
        self.last_used = time.perf_counter()
        return status, keep

    def close(self) -> None:
        self.writer.close()


async def closed_loop(target: Target, connections: int, seconds: float, warmup: float = 1.0) -> Stats:
    stats = Stats()
    request = target.request()
    measuring = [False]
    stop_at = time.perf_counter() + warmup + seconds

    async def worker() -> None:
        connection: _Connection | None = None
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = await _Connection.open(target)
                status, keep = await connection.exchange(request)
                label = str(status)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                label, keep = type(exc).__name__, False
            if measuring[0]:
                stats.latencies.append(time.perf_counter() - started)
                stats.statuses[label] += 1
            if not keep and connection is not None:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(warmup)
    measuring[0] = True
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    stats.elapsed = time.perf_counter() - began
    return stats


async def open_loop(target: Target, rate: float, seconds: float, limit_s: float = 30.0) -> Stats:
    """`rate` requests/s for `seconds`, each on an idle pooled connection (or a new one)."""
    stats = Stats()
    request = target.request()
    idle: list[_Connection] = []
    loop = asyncio.get_running_loop()
    began = loop.time()
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        connection = None
        while idle and connection is None:
            connection = idle.pop()
            if connection.stale:
                connection.close()
                connection = None
        try:
            if connection is None:
                connection = await _Connection.open(target)
            status, keep = await asyncio.wait_for(connection.exchange(request), limit_s)
            label = str(status)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            label, keep = type(exc).__name__, False
        stats.latencies.append(loop.time() - scheduled)
        stats.statuses[label] += 1
        if connection is not None:
            if keep:
                idle.append(connection)
            else:
                connection.close()

    tasks = []
    for index in range(total):
        scheduled = began + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    stats.elapsed = loop.time() - began
    for connection in idle:
        connection.close()
    return stats
