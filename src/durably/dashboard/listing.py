"""The workflow list's query: filters from the address, and keyset pages over them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from durably.client import Client
from durably.info import WorkflowInfo
from durably.status import Status

PAGE = 50
# The time ranges offered, as the address spells them.
SINCE = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


class BadFilter(ValueError):
    """A filter in the address that cannot be used (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What the list shows: every filter, and where the page starts."""

    status: str | None = None
    name: str | None = None
    queue: str | None = None
    since: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # A page older than the cursor (newest first), or newer than it.
    older: tuple[datetime, str] | None = None
    newer: tuple[datetime, str] | None = None
    search: str | None = None

    @classmethod
    def parse(cls, params: QueryParams) -> Filters:
        def text(key: str) -> str | None:
            value = params.get(key, "").strip()
            return value or None

        status = text("status")
        if status is not None and status not in {s.value for s in Status}:
            raise BadFilter(f"unknown status {status!r}")
        since = text("since")
        if since is not None and since not in SINCE:
            raise BadFilter(f"unknown time range {since!r}; use one of {', '.join(SINCE)}")
        return cls(
            status=status,
            name=text("name"),
            queue=text("queue"),
            since=since,
            created_after=_moment(text("from"), "from"),
            created_before=_moment(text("to"), "to"),
            older=_cursor(text("older")),
            newer=_cursor(text("newer")),
            search=text("id"),
        )

    def query(self, **cursor: str) -> str:
        """This list's address query with a page cursor (``older=`` or ``newer=``)."""
        values = {
            "status": self.status,
            "name": self.name,
            "queue": self.queue,
            "since": self.since,
            "from": self.created_after.isoformat() if self.created_after else None,
            "to": self.created_before.isoformat() if self.created_before else None,
            **cursor,
        }
        return urlencode({k: v for k, v in values.items() if v})

    def keywords(self) -> dict[str, Any]:
        """The filters as ``list_workflows`` keywords (no paging)."""
        after = self.created_after
        if self.since is not None:
            bound = datetime.now(UTC) - SINCE[self.since]
            after = bound if after is None else max(after, bound)
        return {
            "status": self.status,
            "name": self.name,
            "queue": self.queue,
            "created_after": after,
            "created_before": self.created_before,
        }

    @property
    def first_page(self) -> bool:
        return self.older is None and self.newer is None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the list, newest first, with the cursors of its neighbours."""

    rows: list[WorkflowInfo]
    older: str | None  # cursor of the page after this one, None at the end
    newer: str | None  # cursor of the page before this one, None at the start


def cursor_of(info: WorkflowInfo) -> str:
    """A row's place in the list: its creation time and ID."""
    return f"{info.created_at.isoformat()}|{info.id}"


async def read_page(client: Client, filters: Filters) -> Page:
    """A page from the filters' cursor: one query, keyset-paged (fast at any depth)."""
    keywords = filters.keywords()
    if filters.newer is not None:
        # Going back: the rows just after the cursor oldest first, shown newest first.
        found = await client.list_workflows_async(
            **keywords, after=filters.newer, limit=PAGE + 1, descending=False
        )
        more_newer = len(found) > PAGE
        rows = list(reversed(found[:PAGE]))
        return Page(
            rows,
            older=cursor_of(rows[-1]) if rows else None,
            newer=cursor_of(rows[0]) if rows and more_newer else None,
        )
    found = await client.list_workflows_async(
        **keywords, after=filters.older, limit=PAGE + 1, descending=True
    )
    rows = found[:PAGE]
    return Page(
        rows,
        older=cursor_of(rows[-1]) if rows and len(found) > PAGE else None,
        newer=cursor_of(rows[0]) if rows and filters.older is not None else None,
    )


def _moment(value: str | None, label: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadFilter(
            f"{label}: expected an ISO 8601 time such as 2026-01-31T09:30Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    if value is None:
        return None
    at, sep, workflow_id = value.partition("|")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        moment = None
    if not sep or not workflow_id or moment is None or moment.tzinfo is None:
        raise BadFilter(f"a page cursor is a time and an ID, got {value!r}")
    return moment, workflow_id
