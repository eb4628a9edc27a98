"""``/metrics``: the queue gauges of the dashboard's schema for Prometheus to scrape.

Needs the ``prometheus`` extra; without it the address answers 404 and says which extra
to install. The workers' own counters (runs, steps, recoveries) are served by each
worker (``durably worker --metrics-port``): the dashboard runs no workflows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from durably.client import Client
from durably.errors import MissingDependency


def registry_for(client: Client) -> Any:
    """A registry reporting the queues of ``client``'s schema, or None without the extra."""
    try:
        from prometheus_client import CollectorRegistry

        from durably.telemetry.prometheus import Prometheus
    except (ImportError, MissingDependency):
        return None
    registry = CollectorRegistry()
    Prometheus(registry).attach(client.engine)
    return registry


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    if registry is None:
        raise HTTPException(
            404, "metrics need the prometheus extra: pip install 'durably[prometheus]'"
        )
    from durably.telemetry.prometheus import exposition

    body, content_type = await asyncio.to_thread(exposition, registry)
    return Response(body, media_type=content_type)
