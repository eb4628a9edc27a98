"""One workflow: inputs, outcome, the timeline of its steps, events and streams."""

from __future__ import annotations

import json
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from durably.dashboard.render import FINISHED
from durably.dashboard.state import Shared, shared
from durably.dashboard.timeline import lay_out
from durably.errors import DurablyError, StreamTimeout, WorkflowNotFound
from durably.info import error_fields
from durably.status import Status

STREAM_KINDS = frozenset({"write_stream", "close_stream"})
# One poll of a stream returns at most this many values, waiting at most this long.
STREAM_BATCH = 500
STREAM_WAIT = 1.0
# What each button may act on (as the API allows it).
CANCELLABLE = frozenset({Status.PENDING, Status.ENQUEUED, Status.DELAYED})
RESUMABLE = frozenset({Status.CANCELLED, Status.DEAD_LETTER, Status.ENQUEUED, Status.DELAYED})


async def _details(app: Shared, workflow_id: str) -> dict[str, Any] | None:
    """Everything the page shows of a workflow, or None when there is none."""
    client = app.client
    found = await client.list_workflows_async(ids=[workflow_id])
    if not found:
        return None
    info = found[0]
    try:
        steps = await client.list_steps_async(workflow_id)
        events = await client.get_all_events_async(workflow_id)
    except WorkflowNotFound:  # deleted between the reads
        return None
    end = info.completed_at or datetime.now(UTC)
    last = max((s.step for s in steps), default=0)
    streams = sorted({s.name for s in steps if s.kind in STREAM_KINDS})
    return {
        "info": info,
        "error": error_fields(info.error),
        "bars": lay_out(steps, info.created_at, end),
        "step_errors": {s.step: error_fields(s.error) for s in steps if s.error is not None},
        "events": sorted(events.items()),
        "streams": streams,
        "last_step": last,
        "fork_max": max(last, 1),
        "can_cancel": info.status in CANCELLABLE,
        "can_resume": info.status in RESUMABLE,
        "live": info.status not in FINISHED,
    }


async def workflow_page(request: Request) -> Response:
    app = shared(request)
    workflow_id = request.path_params["workflow_id"]
    details = await _details(app, workflow_id)
    if details is None:
        return not_found(request, workflow_id)
    return app.pages.render(
        request, "workflow.html", **details, done=request.query_params.get("done")
    )


async def workflow_live(request: Request) -> Response:
    """The part of the page that changes while the workflow runs, for its live refresh."""
    app = shared(request)
    workflow_id = request.path_params["workflow_id"]
    details = await _details(app, workflow_id)
    if details is None:
        return not_found(request, workflow_id)
    return app.pages.render(request, "workflow_live.html", **details)


async def stream_tail(request: Request) -> Response:
    """The values of a stream from ``?offset=``, as JSON: what arrived within a second,
    the offset to ask from next, and whether the stream has ended."""
    app = shared(request)
    workflow_id = request.path_params["workflow_id"]
    key = request.path_params["key"]
    raw = request.query_params.get("offset", "0")
    if not raw.isdigit():
        return JSONResponse({"error": f"offset must be a whole number, got {raw!r}"}, 400)
    offset = int(raw)
    values: list[Any] = []
    done = False
    try:
        reader = app.client.read_stream_async(workflow_id, key, offset, timeout=STREAM_WAIT)
        async with aclosing(reader) as stream:  # type: ignore[type-var]
            async for value in stream:
                values.append(value)
                if len(values) >= STREAM_BATCH:
                    break
            else:
                done = True
    except StreamTimeout:
        pass
    except DurablyError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    # Values JSON cannot hold are sent as their text; the page shows them as text.
    body = json.dumps({"values": values, "offset": offset + len(values), "done": done}, default=str)
    return Response(body, media_type="application/json")


def not_found(request: Request, workflow_id: str) -> Response:
    """The 404 page naming the ID that was asked for."""
    return shared(request).pages.problem(
        request,
        404,
        "Workflow not found",
        f"no workflow with ID {workflow_id!r} exists in this schema",
    )
