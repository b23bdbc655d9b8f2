"""The scaling policy: (settings, recent load samples, current containers, now) -> what to start and stop.

Modelled on Knative's KPA. Desired counts come from the average demand over a long stable window and a
short panic window. A burst (the panic count reaching twice the capacity) switches to the panic window and
forbids scaling down until a whole stable window has passed without a burst. The function keeps no state:
whether panic is in force is recomputed from the samples every time, so the reconcile loop may call it at
any rate and restart at any moment.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from shipyard.exceptions import InvalidError
from shipyard.spec import AutoscalerSettings

PANIC_THRESHOLD = 2.0
"""Panic starts when the panic-window desired count reaches this multiple of the capacity."""


@dataclass(frozen=True)
class Sample:
    """One observation of a function's load, recorded by the data plane at a regular rate."""

    at: float
    """Seconds on the monotonic clock that `decide`'s `now` also uses."""
    in_flight: int
    """Requests or inputs being served by containers."""
    queued: int
    """Requests waiting for a free slot."""

    @property
    def demand(self) -> int:
        return self.in_flight + self.queued


@dataclass(frozen=True)
class ContainerView:
    container_id: str
    state: Literal["starting", "ready", "draining"]
    in_flight: int
    idle_since: float | None
    """When it last became idle (in_flight == 0); None while busy or starting."""
    started_at: float
    """Same clock as `Sample.at`: it tells which containers were already there at each past sample."""


@dataclass(frozen=True)
class Decision:
    start: int
    """How many new containers to start now."""
    stop: tuple[str, ...]
    """Ids of the containers to drain and stop now."""
    panic: bool
    """Whether the panic window is in force (for metrics and logs)."""
    desired: int
    """The container count the policy aims at; reached over several decisions when scaling down."""


def decide(
    settings: AutoscalerSettings,
    samples: Sequence[Sample],
    containers: Sequence[ContainerView],
    now: float,
    *,
    stable_window: float = 60.0,
    panic_window: float = 6.0,
) -> Decision:
    """Decide how many containers to start and which idle ones to stop for one function.

    `samples` may hold anything the data plane kept (older ones are ignored) in any order; they are
    averaged per sample, so they should be taken at a regular rate. Draining containers are not capacity.
    """
    _check(settings, stable_window, panic_window)
    target = settings.effective_target
    window = _Window(samples, now - stable_window, now)
    capacity = [c for c in containers if c.state != "draining"]
    current = len(capacity)

    panic = window.panicked(sorted(c.started_at for c in capacity), current, now, panic_window, target)
    panic_desired = _ceil_div(window.average(now - panic_window), target)
    desired = panic_desired if panic else _ceil_div(window.average(now - stable_window), target)
    if window.active:
        desired += settings.buffer_containers
    if panic:
        desired = max(desired, current)
    latest = window.latest
    if latest is not None and latest.queued > 0 and current == 0:
        # Scale from zero at once: the averages over windows full of zeros would answer too little.
        desired = max(desired, _ceil_div(latest.queued, target))
    desired = max(desired, settings.min_containers)
    if settings.max_containers is not None:
        desired = min(desired, settings.max_containers)

    if desired > current:
        return Decision(start=desired - current, stop=(), panic=panic, desired=desired)
    if desired == current or panic:
        return Decision(start=0, stop=(), panic=panic, desired=desired)
    return Decision(start=0, stop=_victims(settings, capacity, current - desired, now), panic=panic,
                    desired=desired)


def _check(settings: AutoscalerSettings, stable_window: float, panic_window: float) -> None:
    if settings.effective_target < 1:
        raise InvalidError(f"target_inputs/max_inputs must be at least 1, got {settings.effective_target}")
    if settings.min_containers < 0 or settings.buffer_containers < 0:
        raise InvalidError("min_containers and buffer_containers must not be negative")
    if settings.max_containers is not None and settings.max_containers < settings.min_containers:
        raise InvalidError(f"max_containers ({settings.max_containers}) is below min_containers "
                           f"({settings.min_containers})")
    if not 0 < panic_window <= stable_window:
        raise InvalidError(f"need 0 < panic_window ({panic_window}) <= stable_window ({stable_window})")


def _ceil_div(value: float, target: int) -> int:
    return math.ceil(value / target)


def _victims(settings: AutoscalerSettings, capacity: Sequence[ContainerView], excess: int,
             now: float) -> tuple[str, ...]:
    ready = [c for c in capacity if c.state == "ready"]
    # Halving bounds how fast a wrong guess can empty the pool; from one container it allows zero.
    limit = min(excess, max(1, len(ready) // 2))
    idle = [c for c in ready if c.in_flight == 0 and c.idle_since is not None
            and now - c.idle_since >= settings.scaledown_window]
    idle.sort(key=lambda c: (c.idle_since, c.container_id))
    return tuple(c.container_id for c in idle[:limit])


class _Window:
    """The samples of the stable window, sorted by time, with prefix sums of demand for window averages."""

    def __init__(self, samples: Sequence[Sample], start: float, end: float) -> None:
        self.samples = sorted((s for s in samples if start <= s.at <= end), key=lambda s: s.at)
        self.times = [s.at for s in self.samples]
        self.sums = [0, *accumulate(s.demand for s in self.samples)]

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    @property
    def active(self) -> bool:
        return self.sums[-1] > 0

    def average(self, since: float, upto: int | None = None) -> float:
        """Mean demand of the samples at or after `since`, among the first `upto` (default: all)."""
        end = len(self.samples) if upto is None else upto
        begin = bisect_left(self.times, since, 0, end)
        return (self.sums[end] - self.sums[begin]) / (end - begin) if end > begin else 0.0

    def panicked(self, starts: Sequence[float], current: int, now: float, panic_window: float,
                 target: int) -> bool:
        """Whether the panic condition held now or at any sample time of the window.

        The capacity at a past sample time is the containers (still present, not draining) started by
        then: it underestimates when containers have exited since, which only errs towards panicking.
        """
        if _bursting(_ceil_div(self.average(now - panic_window), target), current,
                     self.latest is not None and self.latest.queued > 0):
            return True
        for sample in self.samples:
            upto = bisect_right(self.times, sample.at)
            desired = _ceil_div(self.average(sample.at - panic_window, upto), target)
            if _bursting(desired, bisect_right(starts, sample.at), sample.queued > 0):
                return True
        return False


def _bursting(panic_desired: int, capacity: int, queued: bool) -> bool:
    # Like Knative, count an empty pool as one container, so that demand left over from containers
    # that have since exited does not count as a burst; waiting requests with nothing running do.
    return (queued and capacity == 0) or panic_desired >= PANIC_THRESHOLD * max(1, capacity)
