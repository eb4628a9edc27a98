"""The queue duty: claims queued work for this worker, within every limit, and runs it.

A queue is due when work was enqueued on it (a notification), a local slot freed while
it had more work than this worker took, its delayed work or rate window comes due (a
timer), or a heartbeat found ready work on it.
Queues are served round-robin, one batch per queue per round, so a deep queue never
starves a small one served by the same worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import heapq
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durably.runtime.claims import start_claimed, write_claim
from durably.runtime.duty import BATCH, NEVER
from durably.runtime.wakeups import monotonic_at

if TYPE_CHECKING:
    from durably.execution.specs import WorkflowSpec
    from durably.runtime.duty import KeeperHost, Pacer
    from durably.store.database import AsyncDatabase
    from durably.store.statements import Statement

# Queued workflows one worker runs at once per queue when worker_concurrency is not set:
# with sync workflows about its thread pool's size (64 threads run them, the rest wait
# their turn), more when every workflow it runs is async (all run at once on its loop;
# a drain of no-op jobs: about 9,600 -> 11,600 jobs/s with 300 instead of 100).
LOCAL_QUEUE_CAPACITY = 100
LOCAL_QUEUE_CAPACITY_ASYNC = 300


def local_capacity(specs: Iterable[WorkflowSpec]) -> int:
    """How many of a queue's workflows one worker runs at once without worker_concurrency."""
    every_async = all(spec.is_async for spec in specs)
    return LOCAL_QUEUE_CAPACITY_ASYNC if every_async else LOCAL_QUEUE_CAPACITY


class Dispatch:
    """Due queues, their timers, and how many of each queue's workflows run here."""

    def __init__(self, host: KeeperHost, pacer: Pacer, kick: Callable[[], None]) -> None:
        self.host = host
        self.pacer = pacer
        self.kick = kick
        self.due: set[str] = set(host.queues)  # queues to claim from now
        self.timers: list[tuple[float, str]] = []  # (monotonic time, queue)
        self.running: dict[str, int] = {}  # queued workflows running here, per queue
        # Queues that may have more ready work than this worker took: their last claim
        # filled its batch, or found no free slot. A slot freed on any other queue needs
        # no claim: that queue was empty, and new work announces itself (a notification,
        # or the heartbeat's scan if one is lost). Claiming on every freed slot sent a
        # claim per finished workflow that mostly found nothing.
        self.backlogged: set[str] = set()
        # Ends of tracked workflows reported by other threads, freed on the loop at once.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended_lock = threading.Lock()
        self._ended_names: list[str] = []
        self._wake_pending = False

    def next_at(self, now: float) -> float:
        if self.due:
            return now
        return self.timers[0][0] if self.timers else NEVER

    async def run(self, adb: AsyncDatabase, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            self.due.add(heapq.heappop(self.timers)[1])
        due, self.due = self.due, set()
        await self._claim(adb, due)

    def after_outage(self) -> None:
        self.due.update(self.host.queues)
        self.backlogged.update(self.host.queues)

    def queue_due(self, name: str) -> None:
        """Claim from ``name`` soon: work was enqueued, or a local slot freed."""
        self.due.add(name)
        self.kick()

    def queue_at(self, when: datetime, name: str) -> None:
        """Claim from ``name`` at ``when`` (delayed work comes due, a window opens)."""
        heapq.heappush(self.timers, (monotonic_at(when), name))

    async def _claim(self, adb: AsyncDatabase, queues: set[str]) -> None:
        """One batch per due queue; a queue that filled its batch is due again next
        round, after every other due queue had its turn. The queues with no limit
        counted across workers are claimed together, in one statement."""
        host = self.host
        names = list(host.registry)
        if not names:
            return
        plain: list[tuple[str, int]] = []
        default = local_capacity(host.registry.values())
        for name in sorted(queues):
            spec = host.queues.get(name)
            if spec is None or (host.listen_queues is not None and name not in host.listen_queues):
                continue
            capacity = spec.worker_concurrency or default
            free = capacity - self.running.get(name, 0)
            if free <= 0:
                self.backlogged.add(name)  # a finishing run frees a slot: due again
                continue
            want = min(free, BATCH)
            if not spec.serialised:
                plain.append((name, want))
                continue
            claim = host.queue_statements.claim_queued(
                queue=name,
                executor_id=host.executor_id,
                names=names,
                want=want,
                partitioned=spec.partition_concurrency is not None,
                app_version=host.versions.current,
                versions=host.versions.recover,
            )
            lock = host.queue_statements.lock_queue(name)
            rows = await self._run_claim(adb, (lock, claim))
            await self._claimed(adb, name, want, len(rows))
        if len(plain) == 1:
            [(name, want)] = plain
            claim = host.queue_statements.claim_queued(
                queue=name,
                executor_id=host.executor_id,
                names=names,
                want=want,
                partitioned=False,
                app_version=host.versions.current,
                versions=host.versions.recover,
            )
            rows = await self._run_claim(adb, (claim,))
            await self._claimed(adb, name, want, len(rows))
        elif plain:
            claim = host.queue_statements.claim_queued_many(
                wants=plain,
                executor_id=host.executor_id,
                names=names,
                app_version=host.versions.current,
                versions=host.versions.recover,
            )
            rows = await self._run_claim(adb, (claim,))
            for name, want in plain:
                await self._claimed(adb, name, want, sum(r.queue_name == name for r in rows))

    async def _run_claim(self, adb: AsyncDatabase, statements: tuple[Statement, ...]) -> list[Any]:
        """Run a claim and start what it claimed, each counted against its queue."""
        generation = self.host.lease.generation
        rows = await write_claim(adb, self.pacer, statements)
        started = await start_claimed(
            self.host, rows, generation, requeued=self.queue_due, from_queue=True
        )
        for queue, future in started:
            if queue is not None:
                self._track(queue, future)
        return rows

    async def _claimed(self, adb: AsyncDatabase, name: str, want: int, got: int) -> None:
        """After a queue's claim: due again if it filled its batch (more may wait)."""
        if got == want:
            self.due.add(name)  # more may be waiting: its next turn
            self.backlogged.add(name)
            return
        self.backlogged.discard(name)
        spec = self.host.queues.get(name)
        if spec is not None and spec.rate_limit is not None:
            await self._when_window_opens(adb, name)

    async def _when_window_opens(self, adb: AsyncDatabase, queue: str) -> None:
        """A rate-limited queue claimed less than it could: if its window is full, claim
        again the moment the window's oldest start leaves it (not at the next beat)."""
        rows = await adb.run(self.host.queue_statements.rate_window_opens(queue))
        if rows and rows[0].opens_at is not None:
            self.queue_at(rows[0].opens_at, queue)

    def _track(self, name: str, future: concurrent.futures.Future[Any]) -> None:
        """Count a claimed workflow against this worker's share until it ends."""
        self.running[name] = self.running.get(name, 0) + 1
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future.add_done_callback(functools.partial(self._ended, name))

    def _ended(self, name: str, _: object) -> None:
        """(Any thread.) A tracked workflow ended: its slot is freed on the loop. Ends
        that come together (a group-commit batch's) wake the loop once, not once each."""
        with self._ended_lock:
            self._ended_names.append(name)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._release_ended)

    def _release_ended(self) -> None:
        with self._ended_lock:
            names, self._ended_names = self._ended_names, []
            self._wake_pending = False
        for name in names:
            self._release(name)

    def _release(self, name: str) -> None:
        self.running[name] -= 1
        spec = self.host.queues.get(name)
        # Under a limit counted in the database (across workers, or this worker's runs
        # there, recovered ones included) a claim may have been refused work that is
        # waiting: a freed slot may let it start, so such a queue looks again.
        limited = spec is None or spec.serialised or spec.worker_concurrency is not None
        if limited or name in self.backlogged:
            self.queue_due(name)
