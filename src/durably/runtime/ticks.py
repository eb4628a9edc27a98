"""The schedule duty: runs the scheduler's due ticks when the next one comes.

The scheduler says when its next tick is; a heartbeat's survey brings that forward
when another process created or resumed a schedule.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from durably.runtime.duty import NEVER
from durably.runtime.wakeups import monotonic_at

if TYPE_CHECKING:
    from durably.runtime.duty import SchedulerHook
    from durably.store.database import AsyncDatabase


class Ticks:
    """When the scheduler is next due; running it when it is."""

    def __init__(self, scheduler: SchedulerHook | None) -> None:
        self.scheduler = scheduler
        self.at = time.monotonic() if scheduler is not None else NEVER

    def next_at(self, now: float) -> float:
        return self.at

    async def run(self, adb: AsyncDatabase, now: float) -> None:
        if self.scheduler is not None:
            self.at = await self.scheduler.tick(adb)

    def after_outage(self) -> None:
        if self.scheduler is not None:
            self.at = time.monotonic()

    def tick_at(self, when: datetime) -> None:
        """A schedule's next tick, as the database sees it."""
        if self.scheduler is not None:
            self.at = min(self.at, monotonic_at(when))
