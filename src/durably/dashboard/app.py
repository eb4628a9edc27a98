"""The dashboard's routes: which address shows which page, behind the Guard."""

from __future__ import annotations

import secrets
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from durably.client import Client
from durably.dashboard.metrics import metrics, registry_for
from durably.dashboard.render import Pages
from durably.dashboard.security import Guard
from durably.dashboard.settings import Settings
from durably.dashboard.state import Shared, shared
from durably.dashboard.views_actions import act
from durably.dashboard.views_queues import queue_rows, queues_page, schedules_page
from durably.dashboard.views_workflow import stream_tail, workflow_live, workflow_page
from durably.dashboard.views_workflows import workflow_list, workflow_rows


async def _home(request: Request) -> Response:
    return RedirectResponse("/workflows", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not hasattr(request.state, "csrf"):  # refused before the guard made a session
        return Response(exc.detail, status_code=exc.status_code, media_type="text/plain")
    titles = {404: "Not found", 405: "Method not allowed"}
    return shared(request).pages.problem(
        request,
        exc.status_code,
        titles.get(exc.status_code, "Error"),
        f"{request.method} {request.url.path}: {exc.detail}",
    )


def build(client: Client, settings: Settings) -> Starlette:
    """The ASGI app serving the dashboard of ``client``'s schema."""
    static = resources.files("durably.dashboard").joinpath("static")
    routes = [
        Route("/", _home),
        Route("/workflows", workflow_list),
        Route("/workflows/rows", workflow_rows),
        Route("/workflows/{workflow_id:path}/live", workflow_live),
        Route("/workflows/{workflow_id:path}/streams/{key}", stream_tail),
        Route("/workflows/{workflow_id:path}/{action}", act, methods=["POST"]),
        Route("/workflows/{workflow_id:path}", workflow_page),
        Route("/queues", queues_page),
        Route("/queues/rows", queue_rows),
        Route("/schedules", schedules_page),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    # A fresh secret each start: CSRF tokens of an earlier run stop working.
    middleware = [Middleware(Guard, settings=settings, secret=secrets.token_bytes(32))]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error}
    )
    app.state.metrics = registry_for(client)
    app.state.shared = Shared(client, Pages(client.schema, settings.read_only), settings)
    return app
