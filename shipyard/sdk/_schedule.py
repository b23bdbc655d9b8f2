"""`Period` and `Cron`: the `schedule=` of a deployed function, run by the control plane."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..exceptions import InvalidError
from ..spec import ScheduleSpec


class Schedule:
    """Base of `Period` and `Cron`."""

    spec: ScheduleSpec


class Period(Schedule):
    """Run every so often, counted from the deploy: `Period(hours=1)`, `Period(seconds=30)`."""

    def __init__(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> None:
        for name, value in (("days", days), ("hours", hours), ("minutes", minutes), ("seconds", seconds)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidError(f"Period({name}={value!r}): it must be a number of at least 0.")
        total = days * 86400 + hours * 3600 + minutes * 60 + seconds
        if total <= 0:
            raise InvalidError("Period(...) needs a positive length, for example Period(minutes=5).")
        self.spec = ScheduleSpec(period_seconds=float(total))

    def __repr__(self) -> str:
        return f"Period(seconds={self.spec.period_seconds:g})"


class Cron(Schedule):
    """Run at the times of a cron expression (`"0 9 * * 1-5"`), in `timezone` (default UTC)."""

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        if not isinstance(cron_string, str) or not croniter.is_valid(cron_string):
            raise InvalidError(f"Cron({cron_string!r}): not a valid cron expression (like '*/5 * * * *').")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidError(f"Cron(..., timezone={timezone!r}): unknown time zone.") from None
        self.spec = ScheduleSpec(cron=cron_string, timezone=timezone)

    def __repr__(self) -> str:
        return f"Cron({self.spec.cron!r}, timezone={self.spec.timezone!r})"
