"""Schedules: a deployed function with `schedule=Period(...)` fires; cron parsing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard import Cron, InvalidError, Period
from shipyard.server._schedules import next_run
from tests.conftest import Platform


def test_a_period_schedule_fires(platform: Platform, app_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marks = tmp_path / "marks.txt"
    platform.deploy(app_file(f'''
import time
import shipyard

app = shipyard.App("scheduled")


@app.function(schedule=shipyard.Period(seconds=1))
def tick():
    with open({str(marks)!r}, "a") as f:
        f.write(f"{{time.time()}}\\n")
'''))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if marks.exists() and len(marks.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert marks.exists() and len(marks.read_text().splitlines()) >= 2
    logs = platform.cli("app", "logs", "scheduled").stdout
    assert "scheduled run of tick started (fc-" in logs
    platform.cli("app", "stop", "scheduled")


def test_cron_next_run_and_bad_schedules() -> None:
    start = datetime(2026, 1, 1, 8, 59, 30, tzinfo=UTC).timestamp()
    due = next_run(Cron("0 9 * * *").spec, start)
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert next_run(Period(minutes=2).spec, 100.0) == 220.0
    with pytest.raises(InvalidError, match="not a valid cron expression"):
        Cron("every day")
    with pytest.raises(InvalidError, match="unknown time zone"):
        Cron("* * * * *", timezone="Mars/Olympus")
    with pytest.raises(InvalidError, match="positive length"):
        Period()
    app = __import__("shipyard").App("x")
    with pytest.raises(InvalidError, match="schedule= takes Period"):
        app.function(schedule="*/5 * * * *")
