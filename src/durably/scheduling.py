"""Cron schedules (placeholder until the scheduling module lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from durably.runtime.engine import Engine, SchedulerHook


class Scheduling:
    """The schedule methods of App."""

    def _make_scheduler(self, engine: Engine) -> SchedulerHook | None:
        return None
