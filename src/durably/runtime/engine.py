"""The live side of an app in one process: database access, background execution,
leases and heartbeats, recovery and takeover.

Everything in the background is one asyncio loop on one daemon thread ("the runtime
loop"): the heartbeat and takeover loop (bounded queries per second, whatever the
number of workflows) and every async workflow started in the background. Sync
workflows started in the background run on a small pool of daemon threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from durably import codec as codec_module
from durably.errors import (
    LostOwnership,
    ResultTimeout,
    WorkflowCancelled,
    WorkflowDeadLettered,
    WorkflowNotFound,
)
from durably.execution.context import WorkflowContext, current_workflow
from durably.execution.effects import Protocol, Sleep, drive_async, drive_sync
from durably.execution.protocol import load_recorded, read_outcome, run_body
from durably.execution.specs import WorkflowSpec
from durably.runtime.threads import DaemonPool
from durably.status import Status
from durably.store.database import AsyncDatabase, Database
from durably.store.statements import Statements

log = logging.getLogger("durably")
T = TypeVar("T")

_POLL_FIRST = 0.005
_POLL_MAX = 0.5


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
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.statements: Statements = db.statements
        self.app_name = app_name
        self.executor_id = (
            executor_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self.codec = codec
        self.lease = lease
        self.registry = registry
        self._on_release = on_release
        self._threads = DaemonPool(max_threads)
        self._local: dict[str, concurrent.futures.Future[Any]] = {}
        # Workflows owned and running (or scheduled to run) in this process.
        self.active: set[str] = set()
        self._local_lock = threading.Lock()
        self._async_dbs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncDatabase] = (
            weakref.WeakKeyDictionary()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._keeper: concurrent.futures.Future[None] | None = None
        self._launched = False
        self._launch_lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle

    def launch(self) -> None:
        """Register this executor, recover its own unfinished workflows, start the keeper."""
        with self._launch_lock:
            if self._launched:
                return
            self.db.run(self._heartbeat_statement())
            self._start_loop()
            self._launched = True
            assert self._loop is not None
            ready: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._keeper = asyncio.run_coroutine_threadsafe(self._keep(ready), self._loop)
            ready.result(timeout=60)

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop background work; wait up to ``grace`` seconds for local workflows."""
        with self._launch_lock:
            if not self._launched:
                self._close_pools()
                return
            self._launched = False
        deadline = time.monotonic() + grace
        with self._local_lock:
            pending = list(self._local.values())
        concurrent.futures.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        loop = self._loop
        if loop is not None and self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)
            if self._keeper is not None:
                try:
                    self._keeper.result(timeout=10)
                except Exception:  # the keeper's own failures were logged already
                    log.debug("keeper ended with an error", exc_info=True)
        try:
            # Others may take over anything still unfinished at once.
            self.db.run(self.statements.remove_executor(self.executor_id))
        except Exception:
            log.warning("could not remove executor row %s", self.executor_id, exc_info=True)
        self._threads.stop()
        self._close_pools()

    def _close_pools(self) -> None:
        loop = self._loop
        if loop is not None:
            adb = self._async_dbs.get(loop)
            if adb is not None:
                asyncio.run_coroutine_threadsafe(adb.close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=10)
            self._loop = None
        self.db.close()
        if self._on_release is not None:
            self._on_release()

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
        if not self._launched:
            self.launch()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self.ensure_launched()
        assert self._loop is not None
        return self._loop

    async def async_db(self) -> AsyncDatabase:
        """The async database of the running event loop, opened on first use."""
        loop = asyncio.get_running_loop()
        adb = self._async_dbs.get(loop)
        if adb is None:
            adb = AsyncDatabase(self.db.url, self.db.schema)
            self._async_dbs[loop] = adb
            await adb.open()
        return adb

    # ----------------------------------------------------------------- keeper

    def _heartbeat_statement(self) -> Any:
        return self.statements.heartbeat(
            executor_id=self.executor_id,
            app_name=self.app_name,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            lease=self.lease,
        )

    async def _keep(self, ready: concurrent.futures.Future[None]) -> None:
        """Heartbeat, recover own workflows, take over expired executors' workflows."""
        self._stopping = asyncio.Event()
        try:
            adb = await self.async_db()
            await self._claim(adb, "own")
        except BaseException as exc:
            ready.set_exception(exc)
            raise
        ready.set_result(None)
        beat_every = self.lease / 3
        next_beat = time.monotonic() + beat_every
        next_scan = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            try:
                if now >= next_beat:
                    await adb.run(self._heartbeat_statement())
                    next_beat = now + beat_every
                if now >= next_scan:
                    await self._claim(adb, "expired")
                    await self._claim(adb, "orphaned")
                    next_scan = now + self.lease / 2 * random.uniform(0.5, 1.0)
            except Exception:
                log.warning("durably keeper: database call failed; retrying", exc_info=True)
                next_beat = min(next_beat, now + 1.0)
                next_scan = max(next_scan, now + 1.0)
            timeout = max(0.0, min(next_beat, next_scan) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout)

    async def _claim(self, adb: AsyncDatabase, which: str) -> None:
        """Claim and run unfinished workflows: this executor's own on launch, those of
        expired executors, or this executor's orphans (owned, PENDING, not running here:
        left by a database outage or a failed recovery)."""
        names = list(self.registry)
        if not names:
            return
        while True:
            if which == "own":
                statement = self.statements.claim_own(self.executor_id, names, 100)
            elif which == "orphaned":
                with self._local_lock:
                    active = list(self.active.copy())
                statement = self.statements.claim_own(
                    self.executor_id, names, 100, active=active, min_age=self.lease
                )
            else:
                statement = self.statements.take_over(self.executor_id, names, 100)
            rows = await adb.write(statement)
            for row in rows:
                await self._recover(adb, row)
            if len(rows) < 100:
                return

    async def _recover(self, adb: AsyncDatabase, row: tuple[Any, ...]) -> None:
        workflow_id, name, status, inputs, epoch, _codec, attempts = row
        if status == Status.DEAD_LETTER:
            log.error(
                "workflow %s (%s) dead-lettered after %d recovery attempts",
                workflow_id,
                name,
                attempts - 1,
            )
            return
        spec = self.registry[name]
        try:
            args, kwargs = codec_module.load_args(self.codec, inputs, spec.fn)
            recorded = await drive_async(self, load_recorded(self, workflow_id))
        except Exception:
            log.exception("cannot recover workflow %s (%s)", workflow_id, name)
            return
        log.info("recovering workflow %s (%s), attempt %d", workflow_id, name, attempts)
        ctx = WorkflowContext(self, workflow_id, name, int(epoch), recorded)
        self.run_in_background(ctx, spec, args, kwargs)

    # ----------------------------------------------------------------- running

    def run_sync(
        self,
        ctx: WorkflowContext,
        spec: WorkflowSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run a sync workflow body to its recorded outcome in this thread."""
        token = current_workflow.set(ctx)
        self.active.add(ctx.workflow_id)
        try:
            return drive_sync(self, run_body(ctx, spec, args, kwargs))
        finally:
            self.active.discard(ctx.workflow_id)
            current_workflow.reset(token)

    async def run_async(
        self,
        ctx: WorkflowContext,
        spec: WorkflowSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run an async workflow body to its recorded outcome in this task."""
        token = current_workflow.set(ctx)
        self.active.add(ctx.workflow_id)
        try:
            return await drive_async(self, run_body(ctx, spec, args, kwargs))
        finally:
            self.active.discard(ctx.workflow_id)
            current_workflow.reset(token)

    def run_in_background(
        self,
        ctx: WorkflowContext,
        spec: WorkflowSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Start a workflow this executor owns without waiting for it."""
        self.ensure_launched()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        workflow_id = ctx.workflow_id
        with self._local_lock:
            self._local[workflow_id] = future
            self.active.add(workflow_id)

        def settle(result: Any = None, error: BaseException | None = None) -> None:
            with self._local_lock:
                if self._local.get(workflow_id) is future:
                    del self._local[workflow_id]
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
                    if not isinstance(exc, Exception):
                        raise
                else:
                    settle(result)

            self._spawn(job_async())
        else:

            def job() -> None:
                try:
                    result = self.run_sync(ctx, spec, args, kwargs)
                except BaseException as exc:
                    settle(error=exc)
                else:
                    settle(result)

            self._threads.submit(job)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    # ----------------------------------------------------------------- outcomes

    def local_future(self, workflow_id: str) -> concurrent.futures.Future[Any] | None:
        with self._local_lock:
            return self._local.get(workflow_id)

    def decode_outcome(
        self, workflow_id: str, outcome: tuple[str, Any, Any, int], hint: Any
    ) -> Any:
        """The result of a finished workflow, or its recorded error raised again."""
        status, output, error, attempts = outcome
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
            except LostOwnership:
                pass  # another executor finishes it: read its outcome below
        return drive_sync(self, poll_outcome(self, workflow_id, hint, deadline, timeout))

    async def wait_outcome_async(self, workflow_id: str, hint: Any, timeout: float | None) -> Any:
        """Async twin of wait_outcome."""
        deadline = None if timeout is None else time.monotonic() + timeout
        local = self.local_future(workflow_id)
        if local is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(local)), timeout)
            except TimeoutError:
                raise _timeout(workflow_id, timeout) from None
            except LostOwnership:
                pass
        return await drive_async(self, poll_outcome(self, workflow_id, hint, deadline, timeout))


def poll_outcome(
    engine: Engine, workflow_id: str, hint: Any, deadline: float | None, timeout: float | None
) -> Protocol[Any]:
    """Read the workflow's status until it is final or the deadline passes."""
    delay = _POLL_FIRST
    while True:
        outcome = yield from read_outcome(engine, workflow_id)
        if outcome is None:
            raise WorkflowNotFound(workflow_id)
        if Status(outcome[0]).is_final:
            return engine.decode_outcome(workflow_id, outcome, hint)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise _timeout(workflow_id, timeout)
        yield Sleep(delay if remaining is None else min(delay, remaining))
        delay = min(_POLL_MAX, delay * 1.5)


def default_executor_id() -> str:
    """A fresh ID per process: its workflows are taken over by others if it dies."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _timeout(workflow_id: str, timeout: float | None) -> ResultTimeout:
    return ResultTimeout(f"workflow {workflow_id!r} did not finish within {timeout} s")
