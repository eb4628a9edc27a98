"""The background loop of an executor: heartbeat, recovery, takeover, wake-ups, timeouts,
and the LISTEN connection that turns database notifications into local wake-ups.

It is one task on the runtime loop, with a bounded number of queries per second
whatever the number of workflows: idle, it sends a heartbeat every lease/4 and one
scan every ``poll_interval``; notifications and local timers bring scans forward.
During a database outage every duty backs off (capped at a second, so work resumes
within about a second of the server's return) and the outage is logged once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import logging
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durably import codec as codec_module
from durably.errors import ConnectionLost, DatabaseUnavailable, LostOwnership
from durably.execution.context import WorkflowContext
from durably.execution.protocol import load_recorded_many
from durably.runtime.drivers import drive_async
from durably.status import Status
from durably.store.database import AsyncDatabase
from durably.store.notifications import Notifications
from durably.store.outage import FIRST_DELAY, MAX_DELAY
from durably.store.rows import Claimed
from durably.store.statements import Statement

if TYPE_CHECKING:
    from durably.runtime.engine import Engine

log = logging.getLogger("durably")
BATCH = 100
# Recovered workflows (own, after a restart, or taken over) running here at once: a
# backlog of any size is claimed in batches as these finish, so memory stays bounded.
RECOVERY_CAPACITY = 1000
# Queued workflows one worker runs at once per queue when worker_concurrency is not set.
LOCAL_QUEUE_CAPACITY = 100


class Keeper:
    """Owns the executor's background duties; runs on the engine's runtime loop."""

    def __init__(self, engine: Engine, poll_interval: float) -> None:
        self.engine = engine
        self.poll_interval = poll_interval
        self._stopping = asyncio.Event()
        self._kick = asyncio.Event()
        # (monotonic time, queue name or "" for the parked-workflow scan) of local timers
        self._timers: list[tuple[float, str]] = []
        self._listener: asyncio.Task[None] | None = None
        self._wake_due = True  # a message, event or resume may have woken a workflow
        self._draining = False
        self._queues_due: set[str] = set(engine.queues)  # queues to claim from now
        self._running: dict[str, int] = {}  # queued workflows running here, per queue
        self._recovering = 0  # recovered workflows running here
        # The database's time at launch while this executor's own leftovers remain
        # to be claimed (None: all claimed).
        self._own_before: datetime | None = None
        self._expired_left = False  # a takeover stopped at the capacity

    # ---------------------------------------------------------------- control

    def stop(self) -> None:
        self._stopping.set()
        self._kick.set()

    def drain(self) -> None:
        """Stop taking new work (claims, wake-ups, takeovers, ticks); keep the heartbeat."""
        self._draining = True
        self._kick.set()

    def kick(self) -> None:
        """Run the wake-up scan soon (a message or event may have woken a workflow)."""
        self._wake_due = True
        self._kick.set()

    def kick_queue(self, name: str) -> None:
        """Claim from ``name`` soon: work was enqueued, or a local slot freed."""
        self._queues_due.add(name)
        self._kick.set()

    def wake_at(self, when: datetime, queue: str = "") -> None:
        """At ``when``, scan for due parked workflows (a workflow parked here until then),
        or claim from ``queue`` (delayed work enqueued here comes due)."""
        delay = (when - datetime.now(UTC)).total_seconds()
        heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), queue))
        self._kick.set()

    # ---------------------------------------------------------------- loop

    async def run(self, ready: asyncio.Future[None] | Any) -> None:
        engine = self.engine
        try:
            adb = await engine.async_db()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
            if engine.registry:
                self._own_before = (await adb.run(engine.statements.clock()))[0].now
                # The first batch before launch returns; the rest as these finish.
                await self._claim(adb, "own")
        except BaseException as exc:
            ready.set_exception(exc)
            raise
        ready.set_result(None)
        # The heartbeat is a task of its own: a long batch of claims or recoveries in
        # this loop must never let the lease lapse.
        beater = asyncio.get_running_loop().create_task(self._beat(adb))
        next_scan = time.monotonic()
        next_claim = time.monotonic() + engine.lease.seconds / 2
        next_tick = time.monotonic()
        backoff = FIRST_DELAY
        while not self._stopping.is_set():
            now = time.monotonic()
            self._kick.clear()
            while self._timers and self._timers[0][0] <= now:
                _, queue = heapq.heappop(self._timers)
                if queue:
                    self._queues_due.add(queue)
                else:
                    self._wake_due = True
            if self._lapsed() and not self._draining:
                # No claims while this executor's own lease is in doubt: what it claimed
                # could not start, and others may be taking its work. What is due waits
                # for the heartbeat task to renew the lease.
                await self._pause(0.25)
                continue
            try:
                if self._draining:
                    self._queues_due.clear()
                    self._wake_due = False
                    next_claim = next_scan = next_tick = now + 3600
                if self._own_before is not None and self._room() and not self._draining:
                    await self._claim(adb, "own")
                if now >= next_claim or (self._expired_left and self._room()):
                    await self._claim(adb, "expired")
                    await self._claim(adb, "orphaned")
                    next_claim = now + engine.lease.seconds / 2 * random.uniform(0.5, 1.0)
                if self._queues_due:
                    due, self._queues_due = self._queues_due, set()
                    await self._claim_queued(adb, due)
                if self._wake_due or now >= next_scan:
                    self._wake_due = False
                    await self._wake(adb)
                if now >= next_scan and engine.serves:  # a Client runs no workflows
                    await adb.run(engine.statements.cancel_expired())
                    # Parked workflows of other (perhaps dead) executors: wake them on time.
                    soonest = await adb.run(engine.statements.next_wake())
                    if soonest and soonest[0].wake_at is not None:
                        self.wake_at(soonest[0].wake_at)
                if now >= next_scan:
                    # The fallback for lost notifications and delayed work coming due.
                    self._queues_due.update(engine.queues)
                    next_scan = now + self.poll_interval * random.uniform(0.8, 1.0)
                if engine.scheduler is not None and now >= next_tick:
                    next_tick = await engine.scheduler.tick(adb)
                backoff = FIRST_DELAY
            except (ConnectionLost, DatabaseUnavailable):
                # Every duty waits out the pause (no spinning; the store logs the outage
                # once); what was due is retried when the pause ends.
                await self._pause(backoff)
                backoff = min(MAX_DELAY, backoff * 2)
                self._wake_due = True
                self._queues_due.update(engine.queues)
                continue
            except Exception:
                log.exception("durably executor loop: unexpected error; retrying in 1 s")
                await self._pause(1.0)
                continue
            wake = min(next_claim, next_scan)
            if engine.scheduler is not None:
                wake = min(wake, next_tick)
            if self._timers:
                wake = min(wake, self._timers[0][0])
            if self._queues_due or self._wake_due:
                continue
            if (
                (self._own_before is not None or self._expired_left)
                and self._room()
                and not self._draining
            ):
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), max(0.0, wake - time.monotonic()))
        for task in (beater, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def _lapsed(self) -> bool:
        """This executor serves and its lease is not valid now (a Client has none)."""
        engine = self.engine
        try:
            return engine.serves and engine.lease.current() is None
        except LostOwnership:  # revoked: shutting down
            return True

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` with jitter, or less if the keeper is stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds * random.uniform(0.5, 1.0))

    async def _beat(self, adb: AsyncDatabase) -> None:
        """Renew this executor's lease four times a lease (a Client has none); after a
        failure, retry soon with capped back-off, so the lease rarely lapses."""
        engine = self.engine
        if not engine.serves:
            return
        every = engine.lease.every
        delay = every
        backoff = FIRST_DELAY
        while True:
            await asyncio.sleep(delay)
            sent = time.monotonic()
            try:
                await adb.run(engine.heartbeat_statement())
            except (ConnectionLost, DatabaseUnavailable):
                delay = min(every, backoff * random.uniform(0.5, 1.0))
                backoff = min(MAX_DELAY, backoff * 2)
                continue
            except Exception:
                log.exception("durably: heartbeat failed unexpectedly; retrying in 1 s")
                delay = min(every, 1.0)
                continue
            engine.lease.renewed(sent)
            delay, backoff = every, FIRST_DELAY

    async def _write(self, adb: AsyncDatabase, statements: tuple[Statement, ...]) -> Any:
        """Run a claim (one statement, or a few in one transaction). If the connection
        breaks, the claim may have committed: settle it by its token, retrying until the
        database answers (however long), so nothing claimed here is left unrun."""
        try:
            if len(statements) == 1:
                return await adb.write(statements[0])
            return await adb.run_transaction(statements)
        except ConnectionLost:
            pass
        backoff = FIRST_DELAY
        while True:
            await self._pause(backoff)
            backoff = min(MAX_DELAY, backoff * 2)
            try:
                rows = await adb.retry(statements)
            except ConnectionLost:
                if self._stopping.is_set():
                    raise
                continue
            return rows

    # ---------------------------------------------------------------- claims

    async def _claim(self, adb: AsyncDatabase, which: str) -> None:
        """Claim and run unfinished workflows: this executor's own (on launch), those of
        expired executors, or those this process abandoned (a database outage outlasted
        its retries, or a recovery failed)."""
        engine = self.engine
        names = list(engine.registry)
        if not names:
            return
        abandoned: dict[str, int] = {}
        limit = BATCH
        while True:
            if which == "own":
                if self._own_before is None:
                    return
                # Claimed rows are updated after ``before``: the next batch skips them.
                limit = min(BATCH, RECOVERY_CAPACITY - self._recovering)
                if limit <= 0:
                    return
                statement = engine.statements.claim_own(
                    engine.executor_id, names, limit, self._own_before
                )
            elif which == "orphaned":
                abandoned = engine.take_abandoned()
                if not abandoned:
                    return
                statement = engine.statements.claim_abandoned(engine.executor_id, abandoned)
            else:
                limit = min(BATCH, RECOVERY_CAPACITY - self._recovering)
                if limit <= 0:
                    self._expired_left = True
                    return
                statement = engine.statements.take_over(engine.executor_id, names, limit)
            generation = engine.lease.generation
            try:
                rows = await self._write(adb, (statement,))
            except BaseException:
                if which == "orphaned":  # keep them for the next scan
                    for workflow_id, epoch in abandoned.items():
                        engine.abandon(workflow_id, epoch)
                raise
            started = await self._resume(adb, rows, generation, recovering=True)
            for _queue, future in started:
                self._track_recovery(future)
            if which == "own":
                if len(rows) < limit:
                    self._own_before = None
                return
            if which != "expired":
                return
            self._expired_left = len(rows) == limit
            if not self._expired_left or not self._room():
                return

    async def _wake(self, adb: AsyncDatabase) -> None:
        """Claim parked workflows that are due, and replay them here."""
        engine = self.engine
        names = list(engine.registry)
        if not names:
            return
        while True:
            generation = engine.lease.generation
            statement = engine.statements.wake_due(engine.executor_id, names, BATCH)
            rows = await self._write(adb, (statement,))
            await self._resume(adb, rows, generation, recovering=False)
            if len(rows) < BATCH:
                return

    async def _resume(
        self,
        adb: AsyncDatabase,
        rows: list[Claimed],
        generation: int,
        *,
        recovering: bool,
        from_queue: bool = False,
    ) -> list[tuple[str | None, concurrent.futures.Future[Any]]]:
        """Run claimed workflows here; returns (queue or None, future) of each.

        Their recorded operations are read in one query for the whole batch; a workflow
        claimed from its queue for the first time (epoch 1 -> 2) has none, and skips it.
        """
        engine = self.engine
        runnable = []
        for row in rows:
            workflow_id, name, status = row.id, row.name, row.status
            queue, attempts = row.queue_name, row.recovery_attempts
            if status == Status.ENQUEUED and queue is not None:
                self.kick_queue(queue)  # put back on its queue: claimed within its limits
            elif status == Status.DEAD_LETTER:
                log.error(
                    "workflow %s (%s) dead-lettered after %d recovery attempts",
                    workflow_id,
                    name,
                    attempts - 1,
                )
            else:
                runnable.append(row)
        history = [row.id for row in runnable if not (from_queue and row.epoch == 2)]
        recorded = await drive_async(engine, load_recorded_many(engine, history))
        started: list[tuple[str | None, concurrent.futures.Future[Any]]] = []
        for row in runnable:
            workflow_id, name, inputs, epoch = row.id, row.name, row.inputs, row.epoch
            attempts, deadline, queue = row.recovery_attempts, row.deadline, row.queue_name
            spec = engine.registry[name]
            try:
                args, kwargs = codec_module.load_args(engine.codec, inputs, spec.fn)
            except Exception:
                log.exception("cannot resume workflow %s (%s)", workflow_id, name)
                engine.abandon(workflow_id, int(epoch))
                continue
            if recovering:
                log.info("recovering workflow %s (%s), attempt %d", workflow_id, name, attempts)
            ctx = WorkflowContext(
                engine,
                workflow_id,
                name,
                int(epoch),
                recorded.get(workflow_id, {}),
                deadline,
                lease_generation=generation,
            )
            future = engine.run_in_background(ctx, spec, args, kwargs)
            if future is not None:
                started.append((queue, future))
        return started

    # ---------------------------------------------------------------- queues

    async def _claim_queued(self, adb: AsyncDatabase, queues: set[str]) -> None:
        """Claim queued work for this worker, within every limit, and run it here.

        One batch per queue per round, round-robin: a queue that filled its batch is due
        again next round, after every other due queue had its turn, so a deep queue
        never starves a small one served by the same worker.
        """
        engine = self.engine
        names = list(engine.registry)
        if not names:
            return
        for name in sorted(queues):
            spec = engine.queues.get(name)
            if spec is None or (
                engine.listen_queues is not None and name not in engine.listen_queues
            ):
                continue
            capacity = spec.worker_concurrency or LOCAL_QUEUE_CAPACITY
            free = capacity - self._running.get(name, 0)
            if free <= 0:
                continue  # a finishing run frees a slot and makes the queue due again
            want = min(free, BATCH)
            claim = engine.queue_statements.claim_queued(
                queue=name,
                executor_id=engine.executor_id,
                names=names,
                want=want,
                partitioned=spec.partition_concurrency is not None,
            )
            generation = engine.lease.generation
            if spec.serialised:
                lock = engine.queue_statements.lock_queue(name)
                rows = await self._write(adb, (lock, claim))
            else:
                rows = await self._write(adb, (claim,))
            started = await self._resume(adb, rows, generation, recovering=False, from_queue=True)
            for queue, future in started:
                if queue is not None:
                    self._track(queue, future)
            if len(rows) == want:
                self._queues_due.add(name)  # more may be waiting: its next turn
            elif spec.rate_limit is not None:
                await self._when_window_opens(adb, name)

    async def _when_window_opens(self, adb: AsyncDatabase, queue: str) -> None:
        """A rate-limited queue claimed less than it could: if its window is full, claim
        again the moment the window's oldest start leaves it (not at the next poll)."""
        rows = await adb.run(self.engine.queue_statements.rate_window_opens(queue))
        if rows and rows[0].opens_at is not None:
            self.wake_at(rows[0].opens_at, queue)

    def _room(self) -> bool:
        return self._recovering < RECOVERY_CAPACITY

    def _track_recovery(self, future: concurrent.futures.Future[Any]) -> None:
        """Count a recovered workflow against the capacity until it ends."""
        self._recovering += 1
        loop = asyncio.get_running_loop()

        def done(_: object) -> None:
            loop.call_soon_threadsafe(self._recovery_done)

        future.add_done_callback(done)

    def _recovery_done(self) -> None:
        self._recovering -= 1
        if self._own_before is not None or self._expired_left:
            self._kick.set()

    def _track(self, name: str, future: concurrent.futures.Future[Any]) -> None:
        """Count a claimed workflow against this worker's share until it ends."""
        self._running[name] = self._running.get(name, 0) + 1
        loop = asyncio.get_running_loop()

        def done(_: object) -> None:
            loop.call_soon_threadsafe(self._release, name)

        future.add_done_callback(done)

    def _release(self, name: str) -> None:
        self._running[name] -= 1
        self.kick_queue(name)

    # ---------------------------------------------------------------- notifications

    async def _listen(self) -> None:
        """LISTEN on the schema's channel; reconnect with back-off when the link drops."""
        engine = self.engine
        delay = FIRST_DELAY
        outage = engine.db.outage
        while not self._stopping.is_set():
            try:
                async with Notifications(engine.db.url, engine.statements.channel) as listening:
                    delay = FIRST_DELAY
                    outage.succeeded()
                    # Anything sent while we were not listening: scan now.
                    self.kick()
                    for queue in engine.queues:
                        self.kick_queue(queue)
                    async for payload in listening:
                        self._dispatch(payload)
            except ConnectionLost as exc:
                outage.failed(exc)
                await self._pause(delay)
                delay = min(MAX_DELAY, delay * 2)

    def _dispatch(self, payload: str) -> None:
        engine = self.engine
        engine.notifier.publish(payload)
        kind, _, workflow_id = payload.partition(":")
        if kind == "w":
            engine.supersede_local(workflow_id)  # resumed: a new epoch owns it now
            self.kick()
        elif kind in ("m", "e"):
            self.kick()
        elif kind == "c":
            engine.cancel_local(workflow_id)
        elif kind == "q":
            self.kick_queue(workflow_id)  # here the payload names a queue
        elif kind == "t":  # delayed work of a queue comes due at a time: "t:<epoch>:<queue>"
            due, _, queue = workflow_id.partition(":")
            with contextlib.suppress(ValueError):
                self.wake_at(datetime.fromtimestamp(float(due), UTC), queue)
