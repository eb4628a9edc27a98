"""Statements of telemetry.sql: what a metrics scrape reads (queue depth and age)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from durably.store import sqlfile
from durably.store.statements import Statement, bound

if TYPE_CHECKING:
    from durably.store.dialect import Dialect


def queue_gauges(schema: str, dialect: Dialect | None = None) -> Statement:
    """Per queue: waiting, oldest waiting age (s) and running (rows of ``QueueGauge``)."""
    return bound(sqlfile.statement("queue_gauges", schema, dialect), {})
