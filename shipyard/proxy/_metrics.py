"""Prometheus metrics of the platform, served as text at `/metrics`.

Per-request work is one dict read plus a counter and a histogram update on label children cached
per function: no label resolution on the hot path. Gauges (in-flight, queue depth, containers by
state) are read from the pools at scrape time, so requests never touch them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._pool import FunctionPool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COLD_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class PoolState:
    """What the scrape reads of one function: its pool and the containers still starting."""

    app: str
    function: str
    pool: FunctionPool
    starting: int


class FunctionMetrics:
    """The label children of one function, resolved once."""

    __slots__ = ("_labels", "_metrics", "_status", "latency", "queue_wait")

    def __init__(self, metrics: Metrics, app: str, function: str) -> None:
        self._metrics = metrics
        self._labels = (app, function)
        self._status: dict[int, Counter] = {}
        self.latency = metrics.latency.labels(app, function)
        self.queue_wait = metrics.queue_wait.labels(app, function)

    def observe(self, status: int, seconds: float) -> None:
        counter = self._status.get(status)
        if counter is None:
            counter = self._status[status] = self._metrics.requests.labels(*self._labels, str(status))
        counter.inc()
        self.latency.observe(seconds)


class _PoolCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[PoolState]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "shipyard_requests_in_flight", "Requests being served by containers", labels=["app", "function"]
        )
        queued = GaugeMetricFamily(
            "shipyard_queue_depth", "Requests waiting for a container slot", labels=["app", "function"]
        )
        containers = GaugeMetricFamily(
            "shipyard_containers", "Containers by state", labels=["app", "function", "state"]
        )
        for state in self._source():
            labels = [state.app, state.function]
            in_flight.add_metric(labels, state.pool.in_flight)
            queued.add_metric(labels, state.pool.queued)
            counts = {"starting": state.starting, "idle": 0, "busy": 0, "draining": 0}
            for container in state.pool.containers.values():
                if container.draining:
                    counts["draining"] += 1
                else:
                    counts["busy" if container.in_flight else "idle"] += 1
            for name, count in counts.items():
                containers.add_metric([*labels, name], count)
        yield in_flight
        yield queued
        yield containers


class Metrics:
    """One registry per server (tests run several servers in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        function = ["app", "function"]
        self.requests = Counter(
            "shipyard_requests", "Requests answered by the proxy, by status",
            [*function, "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "shipyard_request_duration_seconds", "Time from the request's arrival to the end of the response",
            function, buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.queue_wait = Histogram(
            "shipyard_queue_wait_seconds", "Time spent waiting for a container slot (requests that waited)",
            function, buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.cold_starts = Counter(
            "shipyard_cold_starts", "Containers started", function, registry=self.registry
        )
        self.cold_start_seconds = Histogram(
            "shipyard_cold_start_duration_seconds", "Time from starting a container to it serving",
            function, buckets=COLD_START_BUCKETS, registry=self.registry,
        )
        self.cold_start_phase_seconds = Histogram(
            "shipyard_cold_start_phase_seconds",
            "Cold start phases: spawn (process and sandbox), imports, enter, app_start",
            [*function, "phase"], buckets=COLD_START_BUCKETS, registry=self.registry,
        )
        self._functions: dict[str, FunctionMetrics] = {}

    def for_function(self, function_id: str, app: str, function: str) -> FunctionMetrics:
        metrics = self._functions.get(function_id)
        if metrics is None:
            metrics = self._functions[function_id] = FunctionMetrics(self, app, function)
        return metrics

    def cold_start(self, app: str, function: str, seconds: float, phases: list[tuple[str, float]]) -> None:
        self.cold_starts.labels(app, function).inc()
        self.cold_start_seconds.labels(app, function).observe(seconds)
        for phase, phase_seconds in phases:
            self.cold_start_phase_seconds.labels(app, function, phase).observe(phase_seconds)

    def watch_pools(self, source: Callable[[], Iterable[PoolState]]) -> None:
        self.registry.register(_PoolCollector(source))

    def render(self) -> bytes:
        return generate_latest(self.registry)
