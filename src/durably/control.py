"""Starting nothing, looking at and steering workflows: the methods App and Client share.

``handle``, listings, messages, events, streams, cancel, resume, fork and wait_first,
each with an ``_async`` twin; one implementation serves both classes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Unpack

from durably.app_core import AppCore
from durably.errors import InvalidArgument, StreamTimeout, WorkflowNotFound
from durably.execution.context import active_workflow
from durably.execution.effects import Protocol, Read, Write
from durably.execution.protocol import read_outcome
from durably.execution.queueing import set_delay
from durably.execution.specs import WorkflowSpec
from durably.execution.waits import (
    check_key,
    check_topic,
    first_finished,
    first_finished_in_workflow,
    get_event_in_workflow,
    get_event_outside,
    next_stream_entries,
    send_outside,
    wait_first_position,
)
from durably.execution.waits import (
    send as send_in_workflow,
)
from durably.info import StepInfo, WorkflowInfo, list_query, step_info, workflow_info
from durably.keywords import WorkflowFilters, check_keywords
from durably.options import check_seconds, check_workflow_id, now
from durably.queue_stats import QueueStats, check_minutes, read_queue_stats
from durably.runtime.drivers import drive_async, drive_sync
from durably.store.rows import Outcome
from durably.store.statements import Statement
from durably.twins import Job, twins
from durably.workflow import WorkflowHandle

if TYPE_CHECKING:
    from durably.runtime.engine import Engine


class Control(AppCore):
    """Operations on workflows by ID, from anywhere (inside a workflow they are durable).

    Each ``x, x_async = twins(_x)`` pair is made from one builder (``durably.twins``);
    cancel and fork drive their protocols (which check their own arguments) from two
    one-line methods.
    """

    def _hint(self, name: str | None) -> Any:
        spec = self._registry.get(name) if name is not None else None
        return spec.return_hint if spec is not None else None

    # ---------------------------------------------------------------- handles

    def _find(self, workflow_id: str) -> Protocol[WorkflowHandle[Any]]:
        handle, _ = yield from self._found(workflow_id)
        return handle

    def _found(self, workflow_id: str) -> Protocol[tuple[WorkflowHandle[Any], Outcome]]:
        rows = yield Read(self.engine.statements.get_outcome(workflow_id))
        if not rows:
            raise WorkflowNotFound(workflow_id)
        row: Outcome = rows[0]
        return WorkflowHandle(self.engine, workflow_id, self._hint(row.name)), row

    def _handle(self, workflow_id: str) -> Job[WorkflowHandle[Any]]:
        """A handle for an existing workflow; WorkflowNotFound if there is none."""
        check_workflow_id(workflow_id)
        return self.engine, self._find(workflow_id)

    handle, handle_async = twins(_handle)

    # ---------------------------------------------------------------- listings

    def _list_workflows(self, **filters: Unpack[WorkflowFilters]) -> Job[list[WorkflowInfo]]:
        """Workflows matching every filter given (``status``, one or several; ``name``;
        ``ids``; ``created_after``/``created_before``; ``queue``), oldest first unless
        ``descending=True``, from ``offset`` (default 0) or after the ``after`` cursor
        (``(created_at, id)`` of the previous page's last row), at most ``limit``."""
        check_keywords(filters, WorkflowFilters, "list_workflows")
        engine = self.engine
        return engine, _listing(engine, self._registry, list_query(engine.statements, **filters))

    list_workflows, list_workflows_async = twins(_list_workflows)

    def _steps(self, workflow_id: str) -> Protocol[list[StepInfo]]:
        engine = self.engine
        rows = yield Read(engine.statements.list_operations(workflow_id))
        if not rows and (yield from read_outcome(engine, workflow_id)) is None:
            raise WorkflowNotFound(workflow_id)
        return [step_info(row, engine.codec) for row in rows]

    def _list_steps(self, workflow_id: str) -> Job[list[StepInfo]]:
        """Every recorded operation of a workflow, in step order."""
        check_workflow_id(workflow_id)
        return self.engine, self._steps(workflow_id)

    list_steps, list_steps_async = twins(_list_steps)

    def _queue_stats(self, minutes: int = 15) -> Job[list[QueueStats]]:
        """Every queue that is declared or holds waiting or running work, by name: its
        depth, running work, and starts in each of the last ``minutes`` minutes."""
        minutes = check_minutes(minutes)
        return self.engine, read_queue_stats(self.engine, minutes)

    queue_stats, queue_stats_async = twins(_queue_stats)

    # ---------------------------------------------------------------- messages

    def _send(
        self,
        workflow_id: str,
        message: Any,
        topic: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Job[None]:
        """Send a message to a workflow, for its ``durably.recv(topic)`` (``topic`` None:
        the default topic). Exactly once from inside a workflow; the same
        ``idempotency_key`` delivers once from anywhere. ``WorkflowNotFound`` if no
        workflow has that ID."""
        check_workflow_id(workflow_id)
        topic = check_topic(topic)
        if idempotency_key is not None:
            check_key(idempotency_key, "idempotency_key")
        engine = self.engine
        value = engine.codec.dumps(message)  # refused before anything is written
        ctx = active_workflow()
        if ctx is not None and ctx.engine is engine:
            step = ctx.take_step()
            return engine, send_in_workflow(ctx, step, workflow_id, value, topic, idempotency_key)
        return engine, send_outside(engine, workflow_id, value, topic, idempotency_key)

    send, send_async = twins(_send)

    # ---------------------------------------------------------------- events

    def _get_event(self, workflow_id: str, key: str, timeout: float = 60) -> Job[Any]:
        """The latest value of a workflow's event, waiting up to ``timeout`` s for it to be
        set; None after the timeout, also for an unknown workflow (it may be started while
        the call waits; ``send`` raises instead, since its message would be lost). Inside a
        workflow the outcome is recorded for replay."""
        check_workflow_id(workflow_id)
        check_key(key)
        timeout = check_seconds(timeout, "timeout")
        engine = self.engine
        ctx = active_workflow()
        if ctx is not None and ctx.engine is engine:
            return engine, get_event_in_workflow(ctx, ctx.take_step(), workflow_id, key, timeout)
        return engine, get_event_outside(engine, workflow_id, key, timeout)

    get_event, get_event_async = twins(_get_event)

    def _get_all_events(self, workflow_id: str) -> Job[dict[str, Any]]:
        """Every event of a workflow with its latest value."""
        check_workflow_id(workflow_id)
        return self.engine, _all_events(self.engine, workflow_id)

    get_all_events, get_all_events_async = twins(_get_all_events)

    # ---------------------------------------------------------------- streams

    def read_stream(
        self, workflow_id: str, key: str, offset: int = 0, timeout: float | None = None
    ) -> Iterator[Any]:
        """Values of a workflow's stream, live as they are written, from ``offset``.

        Ends when the stream is closed or its workflow finishes. With ``timeout``, a wait
        of that many seconds without a new value raises ``StreamTimeout`` (the stream is
        still open; its ``offset`` says where to read on from).
        """
        cursor = _StreamCursor(self, workflow_id, key, offset, timeout)
        while not cursor.done:
            yield from drive_sync(*cursor.next_batch())

    async def read_stream_async(
        self, workflow_id: str, key: str, offset: int = 0, timeout: float | None = None
    ) -> AsyncIterator[Any]:
        """Async twin of ``read_stream``."""
        cursor = _StreamCursor(self, workflow_id, key, offset, timeout)
        while not cursor.done:
            for value in await drive_async(*cursor.next_batch()):
                yield value

    # ---------------------------------------------------------------- steering

    def cancel(self, workflow_id: str, children: bool = False) -> None:
        """Cancel a workflow: it stops at its next durable call (an async step in flight
        is cancelled); ``children=True`` cancels its descendants too."""
        drive_sync(self.engine, self._cancel(workflow_id, children))

    async def cancel_async(self, workflow_id: str, children: bool = False) -> None:
        """Async twin of ``cancel``."""
        await drive_async(self.engine, self._cancel(workflow_id, children))

    def _cancel(self, workflow_id: str, children: bool) -> Protocol[None]:
        check_workflow_id(workflow_id)
        rows = yield Write(self.engine.statements.cancel(workflow_id, bool(children)))
        if not rows or not rows[0].found:
            raise WorkflowNotFound(workflow_id)
        self.engine.cancel_local(workflow_id)

    def _resume(self, workflow_id: str) -> Job[WorkflowHandle[Any]]:
        """Run a cancelled, dead-lettered or waiting workflow again from its last
        checkpoint; a finished one is left as it is."""
        check_workflow_id(workflow_id)
        return self.engine, self._resumed(workflow_id)

    resume, resume_async = twins(_resume)

    def _resumed(self, workflow_id: str) -> Protocol[WorkflowHandle[Any]]:
        handle, row = yield from self._found(workflow_id)
        yield Write(self.engine.statements.resume(workflow_id, row.epoch))
        return handle

    def _set_delay(self, workflow_id: str, delay: float | timedelta | datetime) -> Job[bool]:
        """Change when a queued, waiting workflow may start (seconds or a timedelta from
        now, or an aware datetime); False if it is no longer waiting on a queue (it started),
        ``WorkflowNotFound`` if no workflow has that ID."""
        check_workflow_id(workflow_id)
        return self.engine, set_delay(self.engine, workflow_id, delay)

    set_delay, set_delay_async = twins(_set_delay)

    def fork(
        self, workflow_id: str, from_step: int, *, new_id: str | None = None
    ) -> WorkflowHandle[Any]:
        """A new workflow with the same inputs whose operations before ``from_step`` are
        copied (not re-run) and which runs again from there, in the background; returns
        its handle. ``new_id``: its ID (default: a new UUID)."""
        return drive_sync(self.engine, self._fork(workflow_id, from_step, new_id))

    async def fork_async(
        self, workflow_id: str, from_step: int, *, new_id: str | None = None
    ) -> WorkflowHandle[Any]:
        """Async twin of ``fork``."""
        return await drive_async(self.engine, self._fork(workflow_id, from_step, new_id))

    def _fork(
        self, workflow_id: str, from_step: int, new_id: str | None
    ) -> Protocol[WorkflowHandle[Any]]:
        check_workflow_id(workflow_id)
        if isinstance(from_step, bool) or not isinstance(from_step, int) or from_step < 1:
            raise InvalidArgument(f"from_step must be a step number >= 1, got {from_step!r}")
        new_id = check_workflow_id(new_id) if new_id is not None else str(uuid.uuid4())
        rows = yield Write(self.engine.statements.fork(workflow_id, new_id, from_step))
        found, created = rows[0].found, rows[0].created
        if not found:
            raise WorkflowNotFound(workflow_id)
        if not created:
            raise InvalidArgument(f"a workflow with id {new_id!r} already exists")
        name = yield from self._name(new_id)
        return WorkflowHandle(self.engine, new_id, self._hint(name))

    def _name(self, workflow_id: str) -> Protocol[str | None]:
        rows = yield Read(self.engine.statements.get_outcome(workflow_id))
        return rows[0].name if rows else None

    def _wait_first(
        self, handles: Sequence[WorkflowHandle[Any]], timeout: float | None = None
    ) -> Job[WorkflowHandle[Any] | None]:
        """The first of ``handles`` to finish (None if none did within ``timeout``).
        Inside a workflow the answer is recorded: a replay gets the same handle, even
        after the others finished too."""
        if not handles or not all(isinstance(h, WorkflowHandle) for h in handles):
            raise InvalidArgument("wait_first takes a non-empty list of workflow handles")
        deadline = _deadline(timeout)
        engine = self.engine
        ids = [h.id for h in handles]
        ctx = active_workflow()
        if ctx is not None and ctx.engine is engine:
            found, position = wait_first_position(ctx)
            waiting = first_finished_in_workflow(ctx, found, position, ids, deadline)
        else:
            waiting = first_finished(engine, ids, deadline)
        return engine, _handle_of(handles, waiting)

    wait_first, wait_first_async = twins(_wait_first)


class _StreamCursor:
    """Where a reader of a stream is: each ``next_batch`` reads the values after it.

    Both ``read_stream`` twins drive the same batches; only the waiting differs.
    """

    def __init__(
        self, source: AppCore, workflow_id: str, key: str, offset: int, timeout: float | None
    ) -> None:
        check_workflow_id(workflow_id)
        check_key(key)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"offset must be a whole number >= 0, got {offset!r}")
        self._source = source
        self._workflow_id, self._key = workflow_id, key
        self._timeout = None if timeout is None else check_seconds(timeout, "timeout")
        self._after = -1  # the step of the last value read
        self._skip = offset  # values still to pass over before the first one returned
        self._offset = offset  # the offset of the next value (what a reader resumes from)
        self._watching = False  # after the first batch, wait for new values
        self.done = False  # closed, or its workflow finished

    def next_batch(self) -> Job[list[Any]]:
        """The next values (none when the stream ended); StreamTimeout when none came
        within ``timeout`` while the stream is still open."""
        engine = self._source.engine
        return engine, self._read(engine, _deadline(self._timeout))

    def _read(self, engine: Engine, deadline: datetime | None) -> Protocol[list[Any]]:
        found = yield from next_stream_entries(
            engine, self._workflow_id, self._key, self._after, self._skip, deadline,
            self._watching,
        )  # fmt: skip
        self._watching = True
        if found is None:  # only with a deadline, so with a timeout
            assert self._timeout is not None
            raise StreamTimeout(self._workflow_id, self._key, self._timeout, self._offset)
        entries, ended = found
        values: list[Any] = []
        for step, value, closed in entries:
            if closed:
                self.done = True
                break
            self._after, self._skip = step, 0
            values.append(value)
        else:
            self.done = ended
        self._offset += len(values)
        return values


def _listing(
    engine: Engine, registry: dict[str, WorkflowSpec], statement: Statement
) -> Protocol[list[WorkflowInfo]]:
    rows = yield Read(statement)
    return [workflow_info(row, engine.codec, registry) for row in rows]


def _all_events(engine: Engine, workflow_id: str) -> Protocol[dict[str, Any]]:
    return dict((yield Read(engine.statements.get_all_events(workflow_id))))


def _handle_of(
    handles: Sequence[WorkflowHandle[Any]], waiting: Protocol[str | None]
) -> Protocol[WorkflowHandle[Any] | None]:
    first = yield from waiting
    return next((h for h in handles if h.id == first), None)


def _deadline(timeout: float | None) -> datetime | None:
    if timeout is None:
        return None
    return now() + timedelta(seconds=check_seconds(timeout, "timeout"))
