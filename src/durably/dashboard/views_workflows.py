"""The workflow list: filters, search by ID, keyset pages, and its live rows."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from durably.dashboard.listing import PAGE, SINCE, BadFilter, Filters, read_page
from durably.dashboard.state import shared


async def workflow_list(request: Request) -> Response:
    """The page; ``?id=`` jumps to that workflow (or says there is none)."""
    app = shared(request)
    try:
        filters = Filters.parse(request.query_params)
    except BadFilter as exc:
        return app.pages.problem(request, 400, "Bad filter", str(exc))
    if filters.search is not None:
        found = await app.client.list_workflows_async(ids=[filters.search])
        if found:
            return RedirectResponse(f"/workflows/{quote(filters.search, safe='')}", 303)
    page = await read_page(app.client, filters)
    return app.pages.render(
        request,
        "workflows.html",
        filters=filters,
        page=page,
        page_size=PAGE,
        since_choices=list(SINCE),
        not_found=filters.search,
        live_query=filters.query() if filters.first_page else None,
    )


async def workflow_rows(request: Request) -> Response:
    """The rows of the list's first page alone, for its live refresh."""
    app = shared(request)
    try:
        filters = Filters.parse(request.query_params)
    except BadFilter as exc:
        return app.pages.problem(request, 400, "Bad filter", str(exc))
    page = await read_page(app.client, filters)
    return app.pages.render(request, "workflow_rows.html", page=page)
