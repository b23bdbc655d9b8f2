"""The Usage page: compute time, tokens and cost by environment, app and endpoint, over time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._chart import GROUP_COLUMNS, METRIC_COLUMNS, RANGES, Group, Metric, build_chart, usage_buckets
from ._web import Pages, environment_of

if TYPE_CHECKING:
    from ..server._usage import UsageMeter


def _choice(request: Request, name: str, options: Mapping[str, object], default: str) -> str:
    value = request.query_params.get(name, default)
    return value if value in options else default


def usage_routes(pages: Pages, meter: UsageMeter) -> list[BaseRoute]:
    async def usage(request: Request) -> Response:
        env = environment_of(request)
        scope = None if env == "*" else env
        range_name = _choice(request, "range", RANGES, "1h")
        metric = cast(Metric, _choice(request, "metric", METRIC_COLUMNS, "cost"))
        group = cast(Group, _choice(request, "group", GROUP_COLUMNS, "subject"))
        span, bucket = RANGES[range_name]
        # What accrued since the meter's last write belongs on this page too (and before `now`, so that
        # it falls inside the last bucket).
        await asyncio.to_thread(meter.flush)
        now = time.time()
        rows = await asyncio.to_thread(meter.report, scope, None)
        series = await asyncio.to_thread(usage_buckets, meter.store, scope, metric=metric, group=group,
                                         span=span, bucket=bucket, now=now)
        chart = build_chart(series, metric=metric, span=span, bucket=bucket, now=now)
        totals: dict[str, Any] = {
            "total_cost": sum(r.cost for r in rows), "total_seconds": sum(r.seconds for r in rows),
            "total_in": sum(r.tokens_in for r in rows), "total_out": sum(r.tokens_out for r in rows),
        }
        return pages.render(request, "usage.html", rows=rows, chart=chart, range_name=range_name,
                            ranges=list(RANGES), metric=metric, group=group, active="usage", **totals)

    return [Route("/usage", pages.page(usage))]
