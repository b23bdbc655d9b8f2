"""Usage over time: time-bucketed sums from the usage table, laid out as a stacked bar chart (inline SVG).

Pure geometry here; the template draws the rectangles, so every label goes through autoescaping.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ..server._store import Store

Group = Literal["environment", "subject"]
Metric = Literal["cost", "seconds", "tokens"]
RANGES: dict[str, tuple[float, float]] = {
    # name → (span, bucket) in seconds
    "1h": (3600.0, 60.0),
    "24h": (86400.0, 1800.0),
    "7d": (7 * 86400.0, 6 * 3600.0),
}
METRIC_COLUMNS: dict[str, str] = {
    "cost": "SUM(cost)",
    "seconds": "SUM(seconds)",
    "tokens": "SUM(tokens_in + tokens_out)",
}
GROUP_COLUMNS: dict[str, str] = {
    "environment": "environment",
    "subject": "subject_kind || ' ' || subject_name || ' (' || environment || ')'",
}
WIDTH, HEIGHT = 960, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 10, 28
PALETTE_SIZE = 7


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    series: list[tuple[str, int]]
    """(name, colour index) per series, for the legend."""
    plot: tuple[float, float, float, float]
    """left, top, right, bottom of the plot area."""


def usage_buckets(store: Store, environment: str | None, *, metric: Metric, group: Group,
                  span: float, bucket: float, now: float) -> dict[str, dict[int, float]]:
    """Series name → bucket index (0 = oldest) → metric sum. Blocking (SQLite)."""
    start = now - span
    sql = (f"SELECT CAST((at - ?) / ? AS INTEGER) AS b, {GROUP_COLUMNS[group]} AS g, "
           f"{METRIC_COLUMNS[metric]} AS v FROM usage WHERE at >= ?")
    params: list[object] = [start, bucket, start]
    if environment is not None:
        sql += " AND environment = ?"
        params.append(environment)
    sql += " GROUP BY b, g"
    series: dict[str, dict[int, float]] = {}
    for row in store._query(sql, tuple(params)):
        if row["v"]:
            series.setdefault(row["g"], {})[int(row["b"])] = float(row["v"])
    return series


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude: float = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def format_value(value: float, metric: Metric) -> str:
    if metric == "cost":
        if value <= 0:
            return "$0"
        # Tiny per-second prices: keep two significant digits instead of printing $0.0000.
        decimals = 2 if value >= 1 else min(8, 1 - math.floor(math.log10(value)))
        return f"${value:,.{decimals}f}"
    if metric == "seconds":
        return f"{value:,.0f} s" if value >= 10 else f"{value:.1f} s"
    return f"{value:,.0f}"


def build_chart(series: dict[str, dict[int, float]], *, metric: Metric, span: float, bucket: float,
                now: float) -> Chart:
    count = max(1, math.ceil(span / bucket))
    names = sorted(series)
    totals = [sum(series[name].get(i, 0.0) for name in names) for i in range(count)]
    top_value = _nice_max(max(totals, default=0.0))
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    plot_width, plot_height = right - LEFT, bottom - TOP
    slot = plot_width / count
    bars: list[Bar] = []
    for i in range(count):
        stacked = 0.0
        stamp = time.strftime("%m-%d %H:%M", time.localtime(now - span + i * bucket))
        for index, name in enumerate(names):
            value = series[name].get(i, 0.0)
            if value <= 0:
                continue
            height = value / top_value * plot_height
            stacked += height
            bars.append(Bar(x=LEFT + i * slot + slot * 0.1, y=bottom - stacked, width=max(1.0, slot * 0.8),
                            height=max(0.5, height), series=index % PALETTE_SIZE,
                            title=f"{stamp} · {name}: {format_value(value, metric)}"))
    y_ticks = [Tick(position=bottom - plot_height * k / 4, label=format_value(top_value * k / 4, metric))
               for k in range(5)]
    label_every = max(1, count // 6)
    x_format = "%H:%M" if span <= 86400 else "%m-%d"
    x_ticks = [Tick(position=LEFT + (i + 0.5) * slot,
                    label=time.strftime(x_format, time.localtime(now - span + i * bucket)))
               for i in range(0, count, label_every)]
    return Chart(width=WIDTH, height=HEIGHT, bars=bars, y_ticks=y_ticks, x_ticks=x_ticks,
                 series=[(name, index % PALETTE_SIZE) for index, name in enumerate(names)],
                 plot=(LEFT, TOP, right, bottom))
