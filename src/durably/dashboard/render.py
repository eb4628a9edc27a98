"""The templates and how values look in them (times, durations, JSON); autoescaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from durably.humane import duration
from durably.status import Status

FINISHED = frozenset({Status.SUCCESS, Status.ERROR, Status.CANCELLED, Status.DEAD_LETTER})


def when(moment: datetime | None) -> str:
    """A time as UTC to the second (the page says UTC; browsers differ in zones)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def pretty(value: Any) -> str:
    """A stored value as indented JSON (text as is where JSON cannot hold it)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def short(value: Any, width: int = 80) -> str:
    """A value on one line, cut to ``width`` characters."""
    if value is None:
        return "-"
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _environment() -> jinja2.Environment:
    folder = resources.files("durably.dashboard").joinpath("templates")
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (
                folder.joinpath(name).read_text("utf-8")
                if folder.joinpath(name).is_file()
                else None
            )
        ),
        # Everything from the database is escaped; nothing is marked safe but the
        # charts, which are drawn from numbers only (charts.py).
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, duration=duration, pretty=pretty, short=short)
    env.globals.update(statuses=[s.value for s in Status], finished=FINISHED)
    return env


ENV = _environment()


class Pages:
    """Renders a template with what every page shows (schema, read-only, CSRF token)."""

    def __init__(self, schema: str, read_only: bool) -> None:
        self.schema = schema
        self.read_only = read_only

    def render(
        self, request: Request, template: str, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        html = ENV.get_template(template).render(
            schema=self.schema,
            read_only=self.read_only,
            csrf=request.state.csrf,
            path=request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=status_code)

    def problem(self, request: Request, status_code: int, title: str, detail: str) -> HTMLResponse:
        """An error page: what went wrong, in one sentence."""
        return self.render(request, "problem.html", status_code, title=title, detail=detail)
