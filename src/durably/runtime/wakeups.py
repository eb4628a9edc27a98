"""The wake-up duty: claims parked workflows that are due, and cancels expired deadlines.

A parked workflow is due when its timer passes or a message, event or resume woke it.
Notifications and local timers say when to look; the heartbeat's survey tells of parked
workflows and deadlines of other (perhaps dead) executors, so no scan runs on a guess.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from durably.runtime.claims import start_claimed, write_claim
from durably.runtime.duty import BATCH, NEVER

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost, Pacer
    from durably.store.database import AsyncDatabase


def monotonic_at(when: datetime) -> float:
    """The monotonic time of the wall-clock moment ``when``."""
    return time.monotonic() + max(0.0, (when - datetime.now(UTC)).total_seconds())


class WakeUps:
    """Due parked workflows of this app's names, and deadlines of every workflow."""

    def __init__(self, host: KeeperHost, pacer: Pacer, requeue: Callable[[str], None]) -> None:
        self.host = host
        self.pacer = pacer
        self.requeue = requeue
        self.due = True  # a message, event or resume may have woken a workflow
        self.timers: list[float] = []  # monotonic times parked workflows come due
        self.parked_at = NEVER  # the earliest parked workflow, as the last beat saw it
        self.deadline_at = NEVER  # the earliest deadline of a running workflow

    def next_at(self, now: float) -> float:
        if self.due:
            return now
        return min(self.timers[0] if self.timers else NEVER, self.parked_at, self.deadline_at)

    async def run(self, adb: AsyncDatabase, now: float) -> None:
        if self.deadline_at <= now:
            self.deadline_at = NEVER  # the next beat tells of later ones
            await self._cancel_expired(adb)
        while self.timers and self.timers[0] <= now:
            heapq.heappop(self.timers)
            self.due = True
        if self.parked_at <= now:
            self.parked_at = NEVER
            self.due = True
        if self.due:
            self.due = False
            await self._wake(adb)

    def after_outage(self) -> None:
        self.due = True
        self.deadline_at = time.monotonic()

    def wake_at(self, when: datetime) -> None:
        """Look for due parked workflows at ``when`` (one parked here until then, say)."""
        heapq.heappush(self.timers, monotonic_at(when))

    def parked_due(self, when: datetime) -> None:
        """The earliest parked workflow of this app's names comes due at ``when`` (a
        beat's survey: it replaces the previous beat's answer)."""
        self.parked_at = monotonic_at(when)

    def deadline(self, when: datetime) -> None:
        """The earliest deadline of a running workflow is ``when`` (a beat's survey)."""
        self.deadline_at = monotonic_at(when)

    async def _wake(self, adb: AsyncDatabase) -> None:
        host = self.host
        names = list(host.registry)
        while names:
            generation = host.lease.generation
            versions = host.versions
            statement = host.statements.wake_due(
                host.executor_id,
                names,
                BATCH,
                app_version=versions.current,
                versions=versions.recover,
            )
            rows = await write_claim(adb, self.pacer, (statement,))
            await start_claimed(host, rows, generation, requeued=self.requeue)
            if len(rows) < BATCH:
                return

    async def _cancel_expired(self, adb: AsyncDatabase) -> None:
        rows = await adb.run(self.host.statements.cancel_expired())
        if rows and rows[0].cancelled:
            self.deadline_at = time.monotonic()  # perhaps more than one round's worth
