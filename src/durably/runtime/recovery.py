"""The recovery duty: claims unfinished workflows nobody is running and runs them here.

Four kinds, each in bounded batches so memory never grows with a backlog: this
executor's own leftovers (after a restart under the same ID), those of executors whose
lease expired (takeover), runs this process itself abandoned (a database outage
outlasted their retries, or their inputs could not be loaded), and, after a failover
(the server's WAL timeline moved on across an outage), every workflow owned here, also
those running here: a standby that lagged lost the last commits (an outcome, a park, a
checkpoint), so what this process remembers may be more than the new primary has, and
each run replays from the new primary's record, running the lost steps again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durably.runtime.claims import start_claimed, write_claim
from durably.runtime.duty import NEVER

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost, Pacer
    from durably.runtime.logs import Recovered
    from durably.store.database import AsyncDatabase
    from durably.store.rows import Claimed
    from durably.store.statements import Statement

log = logging.getLogger("durably")

# Recovered workflows running here at once: a backlog of any size is claimed in batches
# as these finish, so memory stays bounded.
RECOVERY_CAPACITY = 1000
RECOVERY_BATCH = 500
# How often to look for work of executors whose rows are gone (an expired executor that
# still has its row is reported by every heartbeat), in leases.
SWEEP_LEASES = 4


class Recovery:
    """Own leftovers at launch, takeovers when a beat reports an expired executor (and a
    slow sweep), abandoned runs of this process: all against one capacity."""

    def __init__(
        self,
        host: KeeperHost,
        pacer: Pacer,
        kick: Callable[[], None],
        requeue: Callable[[str], None],
    ) -> None:
        self.host = host
        self.pacer = pacer
        self.kick = kick
        self.requeue = requeue
        self.recovering = 0  # recovered workflows running here
        # The database's time at launch while this executor's own leftovers remain to be
        # claimed (None: all claimed).
        self.own_before: datetime | None = None
        # The IDs the last batch of own leftovers claimed: the next batch starts after
        # them (empty: from the oldest).
        self.own_after: list[str] = []
        # The database's time at launch, kept: own leftovers of a version this executor
        # does not recover stay its own until moved to one it does (set_version), so the
        # slow sweep looks for them again.
        self.launched_at: datetime | None = None
        self.takeover_due = True  # a beat saw an expired executor's work, or first round
        self.expired_left = False  # a takeover stopped at the capacity
        lease = host.lease.seconds
        self.next_sweep = time.monotonic() + lease * SWEEP_LEASES * random.uniform(0.5, 1.0)
        # Abandoned runs are taken back every lease/2 at most (a run that fails at once
        # must not spin through its recovery attempts).
        self.next_orphans = time.monotonic() + lease / 2
        # Outages ended so far by the database's account: after each, the server's
        # timeline is read again (``timeline_due``); when it moved on, every workflow
        # owned here with an epoch below the new timeline's floor is claimed anew.
        self.outages_seen = host.db.outage.recoveries
        self.timeline_due = False
        self.timeline: int | None = None  # the server's WAL timeline when last read
        self.failover_due = False  # set while a failover's claims remain

    # ---------------------------------------------------------------- the duty

    def room(self) -> bool:
        return self.recovering < RECOVERY_CAPACITY

    def next_at(self, now: float) -> float:
        if not self.room():
            return NEVER  # a finishing recovery kicks the loop
        if self.own_before is not None or self.takeover_due or self.expired_left:
            return now
        if self.host.registry and (
            self.timeline_due
            or self.failover_due
            or self.host.db.outage.recoveries != self.outages_seen
        ):
            return now
        due = self.next_sweep
        if self.host.has_abandoned():
            due = min(due, self.next_orphans)
        return due

    async def run(self, adb: AsyncDatabase, now: float) -> None:
        if self.own_before is not None:
            await self.claim_own(adb)
        if self.takeover_due or self.expired_left or now >= self.next_sweep:
            self.takeover_due = False
            lease = self.host.lease.seconds
            self.next_sweep = now + lease * SWEEP_LEASES * random.uniform(0.5, 1.0)
            if self.own_before is None and self.host.versions.recover is not None:
                self.own_before = self.launched_at
                await self.claim_own(adb)
            await self._take_over(adb)
        if now >= self.next_orphans and self.host.has_abandoned():
            self.next_orphans = now + self.host.lease.seconds / 2
            await self._claim_abandoned(adb)
        recoveries = self.host.db.outage.recoveries
        if recoveries != self.outages_seen:
            self.outages_seen = recoveries
            self.after_outage()
        if self.host.registry:
            if self.timeline_due:
                await self._read_timeline(adb)
            if self.failover_due:
                await self._claim_failed_over(adb)

    def after_outage(self) -> None:
        self.takeover_due = True
        self.timeline_due = True

    def expired_seen(self) -> None:
        """A heartbeat reported work of an executor whose lease expired."""
        self.takeover_due = True

    def timeline_seen(self, timeline: int) -> None:
        """A heartbeat read the server's timeline: if it is not the one last read, the
        database failed over, perhaps without a statement of this process failing across
        it (its connections idle, replaced by the pool): check, as after an outage."""
        if self.timeline is not None and timeline != self.timeline:
            self.timeline_due = True

    # ---------------------------------------------------------------- claims

    async def start(self, adb: AsyncDatabase) -> None:
        """At launch: note the database's time, and claim the first batch of this
        executor's own leftovers (the rest follow as these finish)."""
        if not self.host.registry:
            return
        read = (await adb.run(self.host.statements.timeline()))[0]
        self.own_before, self.timeline = read.now, read.timeline
        self.launched_at = self.own_before
        if read.epoch_floor is not None:
            self.host.fence_below(read.epoch_floor)
        await self.claim_own(adb)

    async def claim_own(self, adb: AsyncDatabase) -> None:
        host = self.host
        names = list(host.registry)
        limit = min(RECOVERY_BATCH, RECOVERY_CAPACITY - self.recovering)
        if self.own_before is None or not names or limit <= 0:
            return
        # Claimed rows are updated after ``before``: no batch takes them again. Each
        # batch starts after the last: its cost does not grow with the backlog.
        versions = host.versions
        after = self.own_after
        statement = host.statements.claim_own(
            host.executor_id,
            names,
            limit,
            self.own_before,
            app_version=versions.current,
            versions=versions.recover,
            after=after,
        )
        claimed = await self._claim(adb, statement, "own")
        if len(claimed) == limit:
            self.own_after = [row.id for row in claimed]
        elif after:
            # The end of the backlog: once more from the oldest, for a row a batch
            # skipped because it was locked at that moment.
            self.own_after = []
        else:
            self.own_before = None

    async def _take_over(self, adb: AsyncDatabase) -> None:
        host = self.host
        names = list(host.registry)
        while names:
            limit = min(RECOVERY_BATCH, RECOVERY_CAPACITY - self.recovering)
            if limit <= 0:
                self.expired_left = True
                return
            versions = host.versions
            statement = host.statements.take_over(
                host.executor_id,
                names,
                limit,
                app_version=versions.current,
                versions=versions.recover,
            )
            claimed = len(await self._claim(adb, statement, "takeover"))
            self.expired_left = claimed == limit
            if not self.expired_left or not self.room():
                return

    async def _claim_abandoned(self, adb: AsyncDatabase) -> None:
        host = self.host
        abandoned = host.take_abandoned()
        if not abandoned:
            return
        try:
            versions = host.versions
            statement = host.statements.claim_abandoned(
                host.executor_id,
                abandoned,
                app_version=versions.current,
                versions=versions.recover,
            )
            await self._claim(adb, statement, "abandoned")
        except BaseException:
            for workflow_id, epoch in abandoned.items():  # kept for the next round
                host.abandon(workflow_id, epoch)
            raise

    async def _read_timeline(self, adb: AsyncDatabase) -> None:
        """After an outage: whether the server's timeline moved on since the last
        reading (a failover); if so, the claims of ``_claim_failed_over`` are due."""
        read = (await adb.run(self.host.statements.timeline()))[0]
        self.timeline_due = False
        if read.timeline is None:
            return  # not known (a dialect without timelines): nothing to compare
        if self.timeline is not None and read.timeline != self.timeline:
            log.warning(
                "durably: the database failed over (WAL timeline %d -> %d); workflows "
                "owned here replay from the new primary's record",
                self.timeline,
                read.timeline,
            )
            self.failover_due = True
        if read.epoch_floor is not None:
            # No body starts here from what the process remembers of a run claimed
            # before the failover: those runs stop, and the workflows they held are
            # claimed anew (below) to replay here.
            self.host.fence_below(read.epoch_floor)
        self.timeline = read.timeline

    async def _claim_failed_over(self, adb: AsyncDatabase) -> None:
        """Every workflow owned here with an epoch below the new timeline's floor, anew,
        in batches while the capacity lasts (due until a batch comes back short)."""
        host = self.host
        limit = min(RECOVERY_BATCH, RECOVERY_CAPACITY - self.recovering)
        if limit <= 0:
            return  # no room now: once recoveries finish
        versions = host.versions
        statement = host.statements.claim_failed_over(
            host.executor_id,
            list(host.registry),
            limit,
            app_version=versions.current,
            versions=versions.recover,
        )
        claimed = await self._claim(adb, statement, "failover")
        if len(claimed) < limit:
            self.failover_due = False

    async def _claim(
        self, adb: AsyncDatabase, statement: Statement, why: Recovered
    ) -> list[Claimed]:
        """Run one claim and start what it claimed; returns the rows it claimed."""
        generation = self.host.lease.generation
        rows = await write_claim(adb, self.pacer, (statement,), own_commit=True)
        started = await start_claimed(
            self.host, rows, generation, recovered=why, requeued=self.requeue
        )
        for _queue, future in started:
            self._track(future)
        return rows

    def _track(self, future: concurrent.futures.Future[Any]) -> None:
        """Count a recovered workflow against the capacity until it ends."""
        self.recovering += 1
        loop = asyncio.get_running_loop()
        here = threading.get_ident()

        def done(_: object) -> None:
            if threading.get_ident() == here:
                self._done()  # an async run ends on this loop's thread
            else:
                loop.call_soon_threadsafe(self._done)

        future.add_done_callback(done)

    def _done(self) -> None:
        self.recovering -= 1
        if self.own_before is not None or self.expired_left:
            self.kick()
