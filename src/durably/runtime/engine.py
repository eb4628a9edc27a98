"""The live side of an app in one process: database access, running workflows here or in
the background, and waiting for outcomes.

Everything in the background runs on one asyncio loop on one daemon thread ("the runtime
loop"): the executor's keeper (see ``keeper``) and every async workflow started in the
background. Sync workflows started in the background run on a small pool of daemon
threads; a parked workflow holds neither a thread nor a task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durably import codec as codec_module
from durably.errors import (
    ExecutorIdInUse,
    LostOwnership,
    ResultTimeout,
    WorkflowCancelled,
    WorkflowDeadLettered,
    WorkflowNotFound,
)
from durably.execution import observe
from durably.execution.context import WorkflowContext, current_workflow
from durably.execution.effects import Protocol, Wait, Watch, Write
from durably.execution.protocol import Parked, cancel_for_timeout, read_outcome, run_body
from durably.execution.retention import Rule
from durably.execution.specs import WorkflowSpec
from durably.execution.versions import NO_VERSION, VersionScope
from durably.execution.waits import POLL_INTERVAL
from durably.runtime import logs
from durably.runtime.drivers import drive_async, drive_sync
from durably.runtime.duty import SchedulerHook as SchedulerHook
from durably.runtime.heartbeat import register
from durably.runtime.identity import enlist, new_incarnation
from durably.runtime.keeper import Keeper
from durably.runtime.lease import Lease
from durably.runtime.notifier import Notifier
from durably.runtime.threads import DaemonPool

if TYPE_CHECKING:
    from durably.queue_spec import QueueSpec
from durably.runtime.other_databases import OtherDatabases
from durably.status import Status
from durably.store.app_database import AppStatements
from durably.store.database import AsyncDatabase, Database
from durably.store.notifications import Kind
from durably.store.rows import Outcome
from durably.store.statements import Statements

log = logging.getLogger("durably")


# How long a run waits for an older run of its workflow in this process to exit (it was
# superseded: it stops at its next step, or is fenced at its next checkpoint).
PREDECESSOR_WAIT = 60.0

# Outcomes that mean "not finished here": wait for the recorded outcome instead.
NOT_HERE = (LostOwnership, Parked)
# Ways a run ends with the workflow no longer this run's to finish.
NOT_MINE = (LostOwnership, Parked, WorkflowCancelled)


class Engine:
    """One app's executor in this process."""

    def __init__(
        self,
        *,
        db: Database,
        app_name: str | None,
        executor_id: str | None,
        codec: codec_module.Codec,
        lease: float,
        registry: dict[str, WorkflowSpec],
        max_threads: int,
        park_after: float,
        poll_interval: float,
        queues: dict[str, QueueSpec] | None = None,
        on_release: Callable[[], None] | None = None,
        serves: bool = True,
        retention: tuple[Rule, ...] = (),
        versions: Callable[[], VersionScope] | None = None,
    ) -> None:
        self.db = db
        self.statements: Statements = db.statements
        self.app_name = app_name
        self.executor_id = executor_id or default_executor_id()
        # This engine's token in its executor row: which process holds the ID now.
        self.incarnation = new_incarnation()
        self.codec = codec
        self.lease = Lease(lease)
        self.registry = registry
        # False for a Client: it never runs workflows, so it is no executor (no heartbeat).
        self.serves = serves
        # The app's versions (execution.versions), asked for at each use: a hash of the
        # code is known once the code is registered.
        self._versions = versions
        self.queues: dict[str, QueueSpec] = queues if queues is not None else {}
        # Queues this process claims from (None: every queue of the app).
        self.listen_queues: frozenset[str] | None = None
        self.queue_statements = db.queue_statements
        # The app's retention policy, applied by one worker of the fleet at a time.
        self.retention = retention
        self.park_after = park_after
        self.notifier = Notifier()
        # Telemetry observers (execution.observe); empty: no hook is called.
        self.observers: observe.Observers = ()
        # Set by the app when it has schedules: ticks run in the keeper's loop.
        self.scheduler: SchedulerHook | None = None
        self._poll_interval = poll_interval
        self._on_release = on_release
        self._threads = DaemonPool(max_threads)
        # Completed to end a shutdown's grace at once (a worker's second signal).
        self._cut_grace: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._lock = threading.Lock()
        # Background runs of this process, for handles to wait on without a query.
        self._local: dict[str, concurrent.futures.Future[Any]] = {}
        # Async runs started from the runtime loop itself, kept until they end.
        self._jobs: set[asyncio.Task[None]] = set()
        # The run of each workflow owned and running (or scheduled to run) here.
        self._active: dict[str, WorkflowContext] = {}
        # Runs that stopped here without an outcome: workflow ID -> the epoch they held.
        self._abandoned: dict[str, int] = {}
        # The lowest epoch of the database's WAL timeline as last read: a run below it
        # was claimed before a failover and stops before its next step (see fence_below).
        self.epoch_floor = 0
        # Databases other than the app's that transaction steps write to.
        self.other_databases = OtherDatabases(db.schema)
        self._async_dbs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncDatabase] = (
            weakref.WeakKeyDictionary()
        )
        self._closers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()
        # The task on each caller's loop that closes its pools when the loop ends.
        self._sentinels: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Task[None]
        ] = weakref.WeakKeyDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._keeper: Keeper | None = None
        self._keeper_done: concurrent.futures.Future[None] | None = None
        self._launched = False
        self._ready = threading.Event()  # set once launch (and its recovery claim) is done
        self._attempt = threading.Event()  # set when the launch under way ends, either way
        self._closed = False
        # Set when a heartbeat found this executor ID taken by another process.
        self._lost_id: ExecutorIdInUse | None = None
        enlist(self)

    @property
    def versions(self) -> VersionScope:
        """The version recorded on what this executor starts, and those it recovers."""
        return self._versions() if self._versions is not None else NO_VERSION

    # ----------------------------------------------------------------- lifecycle

    @property
    def holds_its_id(self) -> bool:
        """Launched (or launching) and not shut down: its executor row is its own."""
        return self._launched and not self._closed

    def launch(self) -> None:
        """Register this executor, recover its own unfinished workflows, start the keeper.

        A launch that fails (the database is away past the retries, say) leaves the
        engine as it was: the next call launches again.
        """
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this app was shut down; create a new durably.App")
                if self._ready.is_set():
                    return
                launching = not self._launched
                self._launched = True
                attempt = self._attempt
            if launching:
                break
            # Another thread launches: wait until its recovery claim is done, or a
            # workflow started now would look like one left by an earlier process.
            # (The runtime thread itself never waits: the claim runs there.)
            if threading.current_thread() is self._loop_thread:
                return
            attempt.wait(90)
            if self._ready.is_set():
                return
            # That launch failed: try again here.
        try:
            self._launch()
        except BaseException:
            self._stop_loop()
            with self._lock:
                self._launched = False
            raise
        else:
            self._ready.set()
        finally:
            with self._lock:
                attempt, self._attempt = self._attempt, threading.Event()
            attempt.set()

    def _launch(self) -> None:
        if self.serves:
            # Before anything runs or is recovered here: the executor ID must be ours.
            register(self, self.db)
        self._start_loop()
        assert self._loop is not None
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def keep() -> None:
            self._keeper = Keeper(self, self._poll_interval)
            await self._keeper.run(ready)

        self._keeper_done = asyncio.run_coroutine_threadsafe(keep(), self._loop)
        ready.result(timeout=90)

    def _stop_loop(self) -> None:
        """Stop the runtime loop of a launch that failed (nothing runs on it yet)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            loop.call_soon_threadsafe(keeper.stop)
        if self._keeper_done is not None:
            with contextlib.suppress(BaseException):
                self._keeper_done.result(timeout=10)
            self._keeper_done = None
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=10)
            self._loop_thread = None
        if not loop.is_running():
            loop.close()

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop background work; wait up to ``grace`` seconds for local workflows."""
        with self._lock:
            launched, self._launched = self._launched, False
            if self._closed:
                return
            self._closed = True
            pending = list(self._local.values())
        if launched:
            if self._loop is not None and self._keeper is not None:
                draining = self._keeper

                async def drain() -> None:
                    draining.drain()

                # Stop claiming first, then see what still runs here.
                asyncio.run_coroutine_threadsafe(drain(), self._loop).result(timeout=10)
                with self._lock:
                    pending = list(self._local.values())
            self._wait_grace(pending, grace)
            loop, keeper = self._loop, self._keeper
            if loop is not None and keeper is not None:
                loop.call_soon_threadsafe(keeper.stop)
                if self._keeper_done is not None:
                    try:
                        self._keeper_done.result(timeout=10)
                    except Exception:
                        log.debug("keeper ended with an error", exc_info=True)
            # No body starts here any more; others may take over what is unfinished.
            self.lease.revoke()
            if self.serves:
                self._release()
            self._threads.stop()
        loop = self._loop
        if loop is not None:
            adb = self._async_dbs.get(loop)
            if adb is not None:
                asyncio.run_coroutine_threadsafe(adb.close(), loop).result(timeout=10)
            closing = self.other_databases.close_loop(loop)
            asyncio.run_coroutine_threadsafe(closing, loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=10)
            if not loop.is_running():
                loop.close()
            self._loop = None
        self.other_databases.close()
        self.db.close()
        if self._on_release is not None:
            self._on_release()

    def cut_grace(self) -> None:
        """Stop waiting for running workflows in a shutdown (under way, or to come): what
        still runs is released at once."""
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self._cut_grace.set_result(None)

    def _wait_grace(self, pending: list[concurrent.futures.Future[Any]], grace: float) -> None:
        """Wait until the local runs ``pending`` end, ``grace`` seconds pass or the grace
        is cut short."""
        deadline = time.monotonic() + max(0.0, grace)
        waiting = set(pending)
        while waiting and not self._cut_grace.done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            _, waiting = concurrent.futures.wait(
                waiting | {self._cut_grace},
                timeout=left,
                return_when=concurrent.futures.FIRST_COMPLETED,
            )
            waiting.discard(self._cut_grace)

    def _release(self) -> None:
        """Hand what this executor leaves unfinished to the others at once: its runs here
        have finished, or were given up (the lease is revoked, so none starts another
        body, and epochs fence any late write). Its lease ends in the database, so every
        live executor's next heartbeat reports the work and takes it over; with nothing
        left, its row goes. What is left is logged, as a WARNING, with IDs and names."""
        with self._lock:
            running = [
                (ctx.workflow_id, ctx.name)
                for ctx in self._active.values()
                if not (ctx.gone or ctx.finished)
            ]
        try:
            rows = self.db.run_settled(
                self.statements.release_executor(self.executor_id, self.incarnation), budget=5.0
            )
            unfinished = rows[0].unfinished if rows else 0
            if rows and not unfinished:
                self.db.run_settled(
                    self.statements.remove_executor(self.executor_id, self.incarnation),
                    budget=5.0,
                )
        except Exception as exc:
            log.warning(
                "durably: executor %s shut down with %d workflow(s) running here (%s) and "
                "could not release them (%s: %s): other workers take them over once its "
                "lease expires, within %g s",
                self.executor_id,
                len(running),
                name_runs(running),
                type(exc).__name__,
                exc,
                self.lease.seconds,
                extra=_left_fields(self.executor_id, running),
            )
            return
        if not rows:
            if running:  # the executor ID was taken: its holder owns these workflows now
                log.warning(
                    "durably: executor %s shut down with %d workflow(s) running here (%s); "
                    "another process holds its executor ID now and owns them",
                    self.executor_id,
                    len(running),
                    name_runs(running),
                    extra=_left_fields(self.executor_id, running),
                )
            return
        if running:
            log.warning(
                "durably: executor %s shut down with %d workflow(s) unfinished (running "
                "here: %s); released: other workers take them over now",
                self.executor_id,
                max(unfinished, len(running)),
                name_runs(running),
                extra=_left_fields(self.executor_id, running),
            )
        elif unfinished:
            # Their runs here ended without an outcome (interrupted, or given up at the
            # grace's end): the work is the database's to hand on.
            log.warning(
                "durably: executor %s shut down leaving %d workflow(s) unfinished; "
                "released: other workers take them over now",
                self.executor_id,
                unfinished,
                extra=_left_fields(self.executor_id, running),
            )

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        self._loop = loop
        self._loop_thread = threading.Thread(target=run, name="durably-runtime", daemon=True)
        self._loop_thread.start()
        started.wait()

    def ensure_launched(self) -> None:
        if not self._ready.is_set():
            self.launch()
        if self._lost_id is not None:
            raise ExecutorIdInUse(*self._lost_id.args)

    def lose_id(self, error: ExecutorIdInUse) -> None:
        """Another process took this executor ID: no workflow or body starts here again."""
        self._lost_id = error
        self.lease.revoke(str(error))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self.ensure_launched()
        assert self._loop is not None
        return self._loop

    def app_statements(self, url: str) -> AppStatements:
        """The statements for another database a transaction step writes to."""
        return self.other_databases.statements(url)

    def lease_held(self) -> int | None:
        """The lease's generation if it is valid now (``Host.lease_held``)."""
        return self.lease.current()

    def opened_async_db(self) -> AsyncDatabase | None:
        """The async database of the running event loop, if opened already (no await)."""
        return self._async_dbs.get(asyncio.get_running_loop())

    async def async_db(self) -> AsyncDatabase:
        """The async database of the running event loop, opened on first use."""
        loop = asyncio.get_running_loop()
        adb = self._async_dbs.get(loop)
        if adb is None:
            adb = AsyncDatabase(self.db.url, self.db.schema, outage=self.db.outage)
            if self.observers:
                adb.observe_batches(observe.batches(self.observers))
            self._async_dbs[loop] = adb
            await adb.open()
            if loop is not self._loop:
                # A loop of the caller's (asyncio.run around `await wf()`): close its
                # connections on that loop when it shuts down, not whenever it is
                # collected. asyncio.run finalises open async generators before it
                # closes the loop, which runs this one's cleanup there; but it cancels
                # every task first, and a psycopg-pool task cancelled in the middle of a
                # connection attempt swallows that and waits for work for ever, so
                # asyncio.run never returned. A task of ours, cancelled in the same
                # round, closes the pools first: their tasks then end.
                sentinel = loop.create_task(
                    _close_when_cancelled(adb, self.other_databases, loop, self._forget_loop)
                )
                closer = _close_at_loop_shutdown(sentinel)
                await closer.__anext__()
                self._closers[loop] = closer
                self._sentinels[loop] = sentinel
        return adb

    def _forget_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """A caller's loop ended (or had every task cancelled): its pools are closed; a
        later call on it opens new ones."""
        self._async_dbs.pop(loop, None)
        self._closers.pop(loop, None)
        self._sentinels.pop(loop, None)

    def set_observers(self, observers: observe.Observers) -> None:
        """Report to ``observers`` from now on (runs, steps, claims, commit batches)."""
        self.observers = tuple(observers)
        for observer in self.observers:
            observer.attach(self)
        on_batch = observe.batches(self.observers)
        self.db.observe_batches(on_batch)
        for adb in list(self._async_dbs.values()):
            adb.observe_batches(on_batch)

    # ----------------------------------------------------------------- bookkeeping

    def _note_exit(self, ctx: WorkflowContext, exc: BaseException) -> None:
        """A run that stopped with no outcome recorded, and still owned here, is
        abandoned: this executor takes it back at its next scan."""
        if ctx.finished or ctx.cancelled or isinstance(exc, NOT_MINE):
            return
        self.abandon(ctx.workflow_id, ctx.epoch)

    def abandon(self, workflow_id: str, epoch: int) -> None:
        with self._lock:
            self._abandoned[workflow_id] = epoch
        keeper, loop = self._keeper, self._loop
        if keeper is not None and loop is not None:
            # The keeper takes it back at its next round (paced: see Recovery).
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(keeper.nudge)

    def has_abandoned(self) -> bool:
        with self._lock:
            return bool(self._abandoned)

    def take_abandoned(self) -> dict[str, int]:
        with self._lock:
            abandoned, self._abandoned = self._abandoned, {}
        return abandoned

    def parked(self, workflow_id: str, wake_at: datetime | None) -> None:
        """A workflow released itself to wait in the database: wake it here when due."""
        keeper, loop = self._keeper, self._loop
        if wake_at is not None and keeper is not None and loop is not None:
            loop.call_soon_threadsafe(keeper.wake_at, wake_at)

    def supersede_local(self, workflow_id: str) -> None:
        """The workflow was given a new epoch elsewhere (resumed): a run of it here stops
        before its next step instead of starting a body the new owner will run too."""
        with self._lock:
            ctx = self._active.get(workflow_id)
        if ctx is not None:
            ctx.superseded = True

    def fence_below(self, floor: int) -> None:
        """Every run here with an epoch below ``floor`` stops before its next step (a
        failover: each workflow it still owns is claimed anew and replays from the new
        primary's record). Decided by the epoch, not by when the run registered: a start
        whose row the new primary made (at the floor) goes on, one that registers late
        with an epoch from before the failover stops too (``hold_lease``)."""
        self.epoch_floor = max(self.epoch_floor, floor)

    def _register(self, ctx: WorkflowContext) -> None:
        """Make ``ctx`` the run of its workflow here. One process never runs a workflow
        twice at once: an older run stops before its next body (superseded), and ``ctx``
        starts only once it has exited (``_await_predecessor``). A run that comes late
        with an epoch below the one running here (a start whose row a claim took over
        meanwhile, as after a failover) is the one superseded."""
        with self._lock:
            older = self._active.get(ctx.workflow_id)
            if older is not None and older is not ctx and (not older.gone or older.bodies):
                if older.epoch > ctx.epoch:
                    ctx.superseded = True
                    return
                older.superseded = True
                if older.exited is None:
                    older.exited = threading.Event()
                ctx.predecessor = older
            self._active[ctx.workflow_id] = ctx

    def _unregister(self, ctx: WorkflowContext) -> None:
        with self._lock:
            ctx.gone = True
            exited = self._forget(ctx)
        if exited is not None:
            exited.set()

    def _forget(self, ctx: WorkflowContext) -> threading.Event | None:
        """(Under the lock.) A run that exited and whose bodies all ended is no longer
        the run of its workflow here; returns what a newer run waits on, to set."""
        if not ctx.gone or ctx.bodies:
            return None  # a body it started (in a task of gather) still runs
        if self._active.get(ctx.workflow_id) is ctx:
            del self._active[ctx.workflow_id]
        return ctx.exited

    def body_started(self) -> WorkflowContext | None:
        """A step body of the current run starts (None: outside any workflow)."""
        ctx = current_workflow.get()
        if ctx is not None:
            with self._lock:
                ctx.bodies += 1
        return ctx

    def body_ended(self, ctx: WorkflowContext | None) -> None:
        """The body ``body_started`` announced ended (its run may have exited before)."""
        if ctx is None:
            return
        with self._lock:
            ctx.bodies -= 1
            exited = self._forget(ctx)
        if exited is not None:
            exited.set()

    def cancel_local(self, workflow_id: str) -> None:
        """A cancel reached this process: stop the workflow at its next durable call,
        and cancel its task at once if it is async."""
        with self._lock:
            ctx = self._active.get(workflow_id)
        if ctx is None or ctx.cancelled:
            return  # not here, or already stopping: one cancellation of its task is enough
        ctx.cancelled = True
        task = ctx.task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)

    # ----------------------------------------------------------------- running

    @contextlib.contextmanager
    def _running(self, ctx: WorkflowContext) -> Iterator[threading.Event | None]:
        """Around a run of a workflow body here: it is the current workflow and is known
        to this engine; an exit without an outcome is noted. Yields the exit of an older
        run of the same workflow here, to wait for before the body starts."""
        token = current_workflow.set(ctx)
        self._register(ctx)
        observers = self.observers
        watched = observe.run_started(observers, ctx) if observers else None
        try:
            older, ctx.predecessor = ctx.predecessor, None
            logs.run_started(ctx)
            yield older.exited if older is not None else None
        except BaseException as exc:
            self._note_exit(ctx, exc)
            logs.run_stopped(ctx, exc, shut_down=self._closed)
            if watched is not None:
                observe.run_ended(observers, ctx, watched, exc)
            raise
        else:
            logs.run_finished(ctx)
            if watched is not None:
                observe.run_ended(observers, ctx, watched, None)
        finally:
            self._unregister(ctx)
            current_workflow.reset(token)

    def run_sync(
        self, ctx: WorkflowContext, spec: WorkflowSpec, args: tuple[Any, ...], kw: dict[str, Any]
    ) -> Any:
        """Run a sync workflow body to its recorded outcome in this thread."""
        with self._running(ctx) as older_exit:
            if older_exit is not None:
                older_exit.wait(PREDECESSOR_WAIT)
            return drive_sync(self, run_body(ctx, spec, args, kw))

    async def run_async(
        self, ctx: WorkflowContext, spec: WorkflowSpec, args: tuple[Any, ...], kw: dict[str, Any]
    ) -> Any:
        """Run an async workflow body to its recorded outcome in this task."""
        task = asyncio.current_task()
        ctx.task = task
        timer = None
        if ctx.deadline is not None and task is not None:
            # An async step in flight is cancelled at the deadline, not at its end.
            delay = (ctx.deadline - datetime.now(UTC)).total_seconds()
            timer = asyncio.get_running_loop().call_later(max(0.0, delay), task.cancel)
        try:
            with self._running(ctx) as older_exit:
                if older_exit is not None:
                    await asyncio.to_thread(older_exit.wait, PREDECESSOR_WAIT)
                return await drive_async(self, run_body(ctx, spec, args, kw))
        except asyncio.CancelledError:
            timed_out = ctx.deadline is not None and datetime.now(UTC) >= ctx.deadline
            if not (ctx.cancelled or timed_out):
                raise
            if task is not None:
                task.uncancel()
            if not ctx.cancelled:
                # Record the timeout; if this is interrupted too, the executor loop's
                # scan of expired deadlines records it.
                with contextlib.suppress(WorkflowCancelled, asyncio.CancelledError):
                    await drive_async(self, cancel_for_timeout(ctx))
            raise WorkflowCancelled(ctx.workflow_id) from None
        finally:
            if timer is not None:
                timer.cancel()
            ctx.task = None

    def run_in_background(
        self,
        ctx: WorkflowContext,
        spec: WorkflowSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> concurrent.futures.Future[Any] | None:
        """Start a workflow this executor owns without waiting for it; returns its future."""
        if self._closed:
            return None  # shutting down: the executor row goes, and others take it over
        self.ensure_launched()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        workflow_id = ctx.workflow_id
        if self.observers:
            observe.adopt(ctx)  # the trace of its start, here, before another thread runs it
        self._register(ctx)
        if not ctx.superseded:  # a late run with a stale epoch keeps the newer's place
            with self._lock:
                self._local[workflow_id] = future

        def settle(result: Any = None, error: BaseException | None = None) -> None:
            with self._lock:
                if self._local.get(workflow_id) is future:
                    del self._local[workflow_id]
            self._unregister(ctx)
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        if spec.is_async:

            async def job_async() -> None:
                try:
                    result = await self.run_async(ctx, spec, args, kwargs)
                except BaseException as exc:
                    settle(error=exc)
                    if not isinstance(exc, Exception | Parked):
                        raise
                else:
                    settle(result)

            loop = self.loop
            if _running_loop() is loop:
                # Started from the runtime loop (a claim starts what it claimed): a task
                # at once, without the hand-over between threads.
                task = loop.create_task(job_async())
                self._jobs.add(task)
                task.add_done_callback(self._job_ended)
            else:
                asyncio.run_coroutine_threadsafe(job_async(), loop)
        else:

            def job() -> None:
                try:
                    result = self.run_sync(ctx, spec, args, kwargs)
                except BaseException as exc:
                    settle(error=exc)
                else:
                    settle(result)

            self._threads.submit(job)
        return future

    def _job_ended(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        if not task.cancelled():
            task.exception()  # settled on its future already; retrieved, not logged twice

    # ----------------------------------------------------------------- outcomes

    def local_future(self, workflow_id: str) -> concurrent.futures.Future[Any] | None:
        with self._lock:
            return self._local.get(workflow_id)

    def decode_outcome(self, workflow_id: str, outcome: Outcome, hint: Any) -> Any:
        """The result of a finished workflow, or its recorded error raised again."""
        status, output, error = outcome.status, outcome.output, outcome.error
        attempts = outcome.recovery_attempts
        if status == Status.SUCCESS:
            return self.codec.load(output, hint)
        if status == Status.ERROR:
            raise codec_module.load_error(error)
        if status == Status.CANCELLED:
            raise WorkflowCancelled(workflow_id)
        if status == Status.DEAD_LETTER:
            raise WorkflowDeadLettered(workflow_id, max(0, attempts - 1))
        raise AssertionError(f"not a final status: {status}")

    def wait_outcome(self, workflow_id: str, hint: Any, timeout: float | None) -> Any:
        """Block until the workflow is finished (here or anywhere); return or raise its outcome."""
        deadline = None if timeout is None else time.monotonic() + timeout
        local = self.local_future(workflow_id)
        if local is not None:
            try:
                return local.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                raise _timeout(workflow_id, timeout) from None
            except NOT_HERE:
                pass  # finished elsewhere, or later: read its recorded outcome
        return drive_sync(self, await_outcome(self, workflow_id, hint, deadline, timeout))

    async def wait_outcome_async(self, workflow_id: str, hint: Any, timeout: float | None) -> Any:
        """Async twin of wait_outcome."""
        deadline = None if timeout is None else time.monotonic() + timeout
        local = self.local_future(workflow_id)
        if local is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(local)), timeout)
            except TimeoutError:
                raise _timeout(workflow_id, timeout) from None
            except NOT_HERE:
                pass
        return await drive_async(self, await_outcome(self, workflow_id, hint, deadline, timeout))


# The first re-read of a watched workflow's status that no notification prompted (s).
FIRST_RECHECK = 0.01


def await_outcome(
    engine: Engine, workflow_id: str, hint: Any, deadline: float | None, timeout: float | None
) -> Protocol[Any]:
    """Wait for a workflow's recorded outcome, woken by its completion notification."""
    keys = (Kind.FINISHED.key(workflow_id), Kind.CANCELLED.key(workflow_id))
    watching = False
    recheck = FIRST_RECHECK
    while True:
        since = yield Watch(keys)
        outcome = yield from read_outcome(engine, workflow_id)
        if outcome is None:
            raise WorkflowNotFound(workflow_id)
        if Status(outcome.status).is_final:
            return engine.decode_outcome(workflow_id, outcome, hint)
        if not watching:
            # Ask the finishing executor to notify; re-check, it may have just finished.
            yield Write(engine.statements.watch(workflow_id))
            watching = True
            continue
        # The finisher reads the watchers in the snapshot its statement began with: a
        # watch that commits while that finish is in flight is not seen, and no
        # notification comes. Such a finish commits within a millisecond or so, so the
        # status is read again soon, then less often (a long run costs a few reads).
        remaining = recheck
        recheck = min(POLL_INTERVAL, recheck * 2)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timeout(workflow_id, timeout)
            remaining = min(remaining, left)
        yield Wait(keys, since, remaining)


async def _close_when_cancelled(
    adb: AsyncDatabase,
    others: OtherDatabases,
    loop: asyncio.AbstractEventLoop,
    forget: Callable[[asyncio.AbstractEventLoop], None],
) -> None:
    """Waits until cancelled (asyncio.run cancels every task of its loop at its end);
    then closes ``adb`` and the other databases' pools of that loop."""
    try:
        await loop.create_future()
    finally:
        forget(loop)
        await adb.close()
        await others.close_loop(loop)


async def _close_at_loop_shutdown(sentinel: asyncio.Task[None]) -> AsyncGenerator[None, None]:
    """Suspended until its loop finalises async generators (a loop run without
    asyncio.run); then has ``sentinel`` close the loop's pools, there."""
    try:
        yield
    finally:
        sentinel.cancel()
        await asyncio.gather(sentinel, return_exceptions=True)


# How many workflows a shutdown warning names (the rest are counted).
NAMED_RUNS = 10


def name_runs(runs: list[tuple[str, str]]) -> str:
    """'id (name), id (name) and 3 more': the first NAMED_RUNS of (workflow ID, name)."""
    if not runs:
        return "none"
    shown = ", ".join(f"{workflow_id} ({name})" for workflow_id, name in runs[:NAMED_RUNS])
    if len(runs) > NAMED_RUNS:
        shown += f" and {len(runs) - NAMED_RUNS} more"
    return shown


def _left_fields(executor_id: str, runs: list[tuple[str, str]]) -> dict[str, Any]:
    """The ``extra`` fields of a shutdown warning, for structured log formatters."""
    return {
        "executor_id": executor_id,
        "workflow_ids": [workflow_id for workflow_id, _ in runs],
        "workflow_names": [name for _, name in runs],
    }


def default_executor_id() -> str:
    """A fresh ID per process: its workflows are taken over by others if it dies."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _timeout(workflow_id: str, timeout: float | None) -> ResultTimeout:
    return ResultTimeout(f"workflow {workflow_id!r} did not finish within {timeout} s")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
