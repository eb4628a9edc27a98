"""Ready-to-run statements of the schedules table (schedules.sql, migration 0004).

Like ``statements.Statements``: the scheduler and the schedule methods of App ask for
these by name and never see SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from durably.store import sqlfile
from durably.store.notifications import channel_for
from durably.store.statements import Statement, bound

# Statements returning a schedule give it as rows.Schedule (rows.ROW_TYPES).
_NAMES = (
    "schedule_upsert", "schedule_get", "schedule_list", "schedule_pause", "schedule_resume",
    "schedule_delete", "schedule_due", "schedule_advance", "schedule_hand_over",
)  # fmt: skip

if TYPE_CHECKING:
    from durably.store.dialect import Dialect


class ScheduleStatements:
    """Builds the schedule statements for one schema; the SQL text is rendered once."""

    def __init__(self, schema: str, dialect: Dialect | None = None) -> None:
        self.schema = schema
        self._sql = {name: sqlfile.statement(name, schema, dialect) for name in _NAMES}

    def upsert(
        self,
        *,
        name: str,
        workflow_name: str,
        cron: str,
        timezone: str,
        catch_up: bool,
        next_tick: datetime | None,
    ) -> Statement:
        """Create or redefine a schedule; returns its row."""
        return bound(
            self._sql["schedule_upsert"],
            {
                "name": name,
                "workflow_name": workflow_name,
                "cron": cron,
                "timezone": timezone,
                "catch_up": catch_up,
                "next_tick": next_tick,
            },
        )

    def get(self, name: str) -> Statement:
        return bound(self._sql["schedule_get"], {"name": name})

    def list(self) -> Statement:
        return bound(self._sql["schedule_list"], {})

    def pause(self, name: str) -> Statement:
        return bound(self._sql["schedule_pause"], {"name": name})

    def resume(self, name: str, revision: int, next_tick: datetime | None) -> Statement:
        """Unpause from ``next_tick`` if the schedule is still at ``revision``."""
        return bound(
            self._sql["schedule_resume"],
            {"name": name, "revision": revision, "next_tick": next_tick},
        )

    def delete(self, name: str) -> Statement:
        return bound(self._sql["schedule_delete"], {"name": name})

    def due(self, workflow_names: Sequence[str], limit: int) -> Statement:
        """Due schedules of these workflows (at most ``limit``), then the next to come;
        each row ends with the database's clock."""
        return bound(self._sql["schedule_due"], {"names": list(workflow_names), "limit": limit})

    def advance(
        self,
        *,
        name: str,
        revision: int,
        old_last_tick: datetime | None,
        last_tick: datetime,
        next_tick: datetime | None,
    ) -> Statement:
        """Move a schedule past its handled ticks, if nobody else moved it first
        (rowcount 1) or not (rowcount 0)."""
        return bound(
            self._sql["schedule_advance"],
            {
                "name": name,
                "revision": revision,
                "old_last_tick": old_last_tick,
                "last_tick": last_tick,
                "next_tick": next_tick,
            },
        )

    def hand_over(
        self,
        *,
        workflow_name: str,
        ids: Sequence[str],
        inputs: Sequence[str],
        codec: str,
        max_recovery_attempts: int,
    ) -> Statement:
        """Create ticks' workflows parked and due now, for any worker that registers
        ``workflow_name``; a row per tick says whether it was created here."""
        return bound(
            self._sql["schedule_hand_over"],
            {
                "workflow_name": workflow_name,
                "ids": list(ids),
                "inputs": list(inputs),
                "codec": codec,
                "max_recovery_attempts": max_recovery_attempts,
                "channel": channel_for(self.schema),
            },
        )


@functools.cache
def schedule_statements(schema: str, dialect: Dialect | None = None) -> ScheduleStatements:
    """The (shared, immutable) schedule statements of ``schema``."""
    return ScheduleStatements(schema, dialect)
