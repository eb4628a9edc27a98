"""The schedules a Client can see: read-only, through the store's schedule listing.

``list_schedules`` is a method of ``App`` (it also defines schedules); the dashboard has
only a Client, so it reads the same statement itself and changes nothing.
"""

from __future__ import annotations

from datetime import UTC

from durably.client import Client
from durably.execution.effects import Protocol, Read
from durably.runtime.drivers import drive_async
from durably.scheduling import ScheduleInfo
from durably.store.rows import Schedule
from durably.store.schedule_statements import schedule_statements


async def list_schedules(client: Client) -> list[ScheduleInfo]:
    """Every schedule of the client's schema, by name."""
    return await drive_async(client.engine, _listing(client.schema))


def _listing(schema: str) -> Protocol[list[ScheduleInfo]]:
    rows: list[Schedule] = yield Read(schedule_statements(schema).list())
    return [_info(row) for row in rows]


def _info(row: Schedule) -> ScheduleInfo:
    return ScheduleInfo(
        name=row.name,
        workflow_name=row.workflow_name,
        cron=row.cron,
        timezone=row.timezone,
        paused=row.paused,
        catch_up=row.catch_up,
        last_tick=row.last_tick.astimezone(UTC) if row.last_tick is not None else None,
        next_tick=(
            row.next_tick.astimezone(UTC) if row.next_tick is not None and not row.paused else None
        ),
    )
