"""The queues page (depth, running, starts per minute as a chart) and the schedules page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from durably.dashboard.charts import bars
from durably.dashboard.state import shared

MINUTES = 30


async def _queue_rows(request: Request, template: str) -> Response:
    app = shared(request)
    stats = await app.client.queue_stats_async(minutes=MINUTES)
    charts = {s.queue: bars(s.started_per_minute) for s in stats}
    return app.pages.render(request, template, stats=stats, charts=charts, minutes=MINUTES)


async def queues_page(request: Request) -> Response:
    return await _queue_rows(request, "queues.html")


async def queue_rows(request: Request) -> Response:
    """The queue table's rows alone, for its live refresh."""
    return await _queue_rows(request, "queue_rows.html")


async def schedules_page(request: Request) -> Response:
    app = shared(request)
    found = await app.client.list_schedules_async()
    return app.pages.render(request, "schedules.html", schedules=found)
