"""Runs the `schedule=` of deployed functions: each due run is a spawned call, like `.spawn()`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import cloudpickle
from croniter import croniter

from ..exceptions import ShipyardError
from ..spec import ScheduleSpec
from ._calls import CallService
from ._platform import Platform

logger = logging.getLogger("shipyard.server.schedules")
TICK = 0.5


def next_run(schedule: ScheduleSpec, after: float) -> float:
    """The first time strictly after `after` (epoch seconds) at which the schedule fires."""
    if schedule.period_seconds is not None:
        return after + schedule.period_seconds
    assert schedule.cron is not None
    start = datetime.fromtimestamp(after, ZoneInfo(schedule.timezone))
    following: datetime = croniter(schedule.cron, start).get_next(datetime)
    return following.timestamp()


class ScheduleRunner:
    def __init__(self, platform: Platform, calls: CallService,
                 clock: Callable[[], float] = time.time) -> None:
        self._platform = platform
        self._calls = calls
        self._clock = clock
        self._due: dict[tuple[str, str, str], float] = {}
        """(app id, tag, schedule JSON) → next run; a redeploy that changes the schedule starts it over."""

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad app must not stop every schedule
                logger.exception("running schedules failed")
            await asyncio.sleep(TICK)

    async def tick(self) -> None:
        now = self._clock()
        seen: set[tuple[str, str, str]] = set()
        for record in await asyncio.to_thread(self._platform.store.live_apps):
            if record.state != "deployed":
                continue  # like the hosted product, `serve`/`run` sessions do not run schedules
            for function in record.spec.functions:
                if function.schedule is None:
                    continue
                key = (record.app_id, function.tag, function.schedule.model_dump_json())
                seen.add(key)
                due = self._due.setdefault(key, next_run(function.schedule, now))
                if now < due:
                    continue
                self._due[key] = next_run(function.schedule, now)
                await self._fire(record.name, record.environment, record.app_id, function.tag)
        for key in set(self._due) - seen:
            del self._due[key]

    async def _fire(self, app_name: str, environment: str, app_id: str, tag: str) -> None:
        try:
            target = await self._calls.resolve(app_name, tag, environment)
            call_id = await self._calls.spawn(target, cloudpickle.dumps(((), {})))
        except ShipyardError as exc:
            self._platform.logs.platform(app_id, f"scheduled run of {tag} failed to start: {exc}")
            return
        self._platform.logs.platform(app_id, f"scheduled run of {tag} started ({call_id})")
