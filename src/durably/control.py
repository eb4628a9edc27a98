"""Starting nothing, looking at and steering workflows: the methods App and Client share.

``handle``, listings, messages, events, streams, cancel, resume, fork and wait_first,
each with an ``_async`` twin; one implementation serves both classes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from durably.errors import InvalidArgument, WorkflowNotFound
from durably.execution.context import active_workflow
from durably.execution.effects import Protocol, Read, Write
from durably.execution.protocol import read_outcome
from durably.execution.queueing import set_delay
from durably.execution.specs import WorkflowSpec
from durably.execution.waits import (
    check_key,
    check_topic,
    first_finished,
    get_event_in_workflow,
    get_event_outside,
    next_stream_entries,
    send_outside,
)
from durably.execution.waits import (
    send as send_in_workflow,
)
from durably.info import StepInfo, WorkflowInfo, list_query, step_info, workflow_info
from durably.options import check_seconds, check_workflow_id, now
from durably.runtime.drivers import drive_async, drive_sync
from durably.store.statements import Statement
from durably.workflow import WorkflowHandle

if TYPE_CHECKING:
    from durably.runtime.engine import Engine


class Control:
    """Operations on workflows by ID, from anywhere (inside a workflow they are durable)."""

    _registry: dict[str, WorkflowSpec]

    @property
    def engine(self) -> Engine:  # provided by App and Client
        raise NotImplementedError

    def _hint(self, name: str | None) -> Any:
        spec = self._registry.get(name) if name is not None else None
        return spec.return_hint if spec is not None else None

    # ---------------------------------------------------------------- handles

    def handle(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle for an existing workflow; WorkflowNotFound if there is none."""
        check_workflow_id(workflow_id)
        return drive_sync(self.engine, self._handle(workflow_id))

    async def handle_async(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Async twin of ``handle``."""
        check_workflow_id(workflow_id)
        return await drive_async(self.engine, self._handle(workflow_id))

    def _handle(self, workflow_id: str) -> Protocol[WorkflowHandle[Any]]:
        rows = yield Read(self.engine.statements.get_outcome(workflow_id))
        if not rows:
            raise WorkflowNotFound(workflow_id)
        return WorkflowHandle(self.engine, workflow_id, self._hint(rows[0].name))

    # ---------------------------------------------------------------- listings

    def list_workflows(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        ids: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        descending: bool = False,
    ) -> list[WorkflowInfo]:
        """Workflows matching every filter given, oldest first unless ``descending``."""
        statement = list_query(
            self.engine.statements, status=status, name=name, ids=ids,
            created_after=created_after, created_before=created_before, limit=limit,
            offset=offset, descending=descending,
        )  # fmt: skip
        return drive_sync(self.engine, self._list_workflows(statement))

    async def list_workflows_async(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        ids: Sequence[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        descending: bool = False,
    ) -> list[WorkflowInfo]:
        """Async twin of ``list_workflows``."""
        statement = list_query(
            self.engine.statements, status=status, name=name, ids=ids,
            created_after=created_after, created_before=created_before, limit=limit,
            offset=offset, descending=descending,
        )  # fmt: skip
        return await drive_async(self.engine, self._list_workflows(statement))

    def _list_workflows(self, statement: Statement) -> Protocol[list[WorkflowInfo]]:
        rows = yield Read(statement)
        return [workflow_info(row, self.engine.codec, self._registry) for row in rows]

    def list_steps(self, workflow_id: str) -> list[StepInfo]:
        """Every recorded operation of a workflow, in step order."""
        check_workflow_id(workflow_id)
        return drive_sync(self.engine, self._list_steps(workflow_id))

    async def list_steps_async(self, workflow_id: str) -> list[StepInfo]:
        """Async twin of ``list_steps``."""
        check_workflow_id(workflow_id)
        return await drive_async(self.engine, self._list_steps(workflow_id))

    def _list_steps(self, workflow_id: str) -> Protocol[list[StepInfo]]:
        engine = self.engine
        rows = yield Read(engine.statements.list_operations(workflow_id))
        if not rows and (yield from read_outcome(engine, workflow_id)) is None:
            raise WorkflowNotFound(workflow_id)
        return [step_info(row, engine.codec) for row in rows]

    # ---------------------------------------------------------------- messages

    def send(
        self,
        workflow_id: str,
        message: Any,
        topic: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a message to a workflow (exactly once from inside a workflow; the same
        ``idempotency_key`` delivers once from anywhere)."""
        drive_sync(self.engine, self._send(workflow_id, message, topic, idempotency_key))

    async def send_async(
        self,
        workflow_id: str,
        message: Any,
        topic: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Async twin of ``send``."""
        await drive_async(self.engine, self._send(workflow_id, message, topic, idempotency_key))

    def _send(
        self, workflow_id: str, message: Any, topic: str | None, idempotency_key: str | None
    ) -> Protocol[None]:
        check_workflow_id(workflow_id)
        topic = check_topic(topic)
        if idempotency_key is not None:
            check_key(idempotency_key, "idempotency_key")
        engine = self.engine
        value = engine.codec.dumps(message)  # refused before anything is written
        ctx = active_workflow()
        if ctx is not None and ctx.engine is engine:
            yield from send_in_workflow(
                ctx, ctx.take_step(), workflow_id, value, topic, idempotency_key
            )
        else:
            yield from send_outside(engine, workflow_id, value, topic, idempotency_key)

    # ---------------------------------------------------------------- events

    def get_event(self, workflow_id: str, key: str, timeout: float = 60) -> Any:
        """The latest value of a workflow's event, waiting up to ``timeout`` s for it to be
        set; None after the timeout (also for an unknown workflow)."""
        return drive_sync(self.engine, self._get_event(workflow_id, key, timeout))

    async def get_event_async(self, workflow_id: str, key: str, timeout: float = 60) -> Any:
        """Async twin of ``get_event``."""
        return await drive_async(self.engine, self._get_event(workflow_id, key, timeout))

    def _get_event(self, workflow_id: str, key: str, timeout: float) -> Protocol[Any]:
        check_workflow_id(workflow_id)
        check_key(key)
        timeout = check_seconds(timeout, "timeout")
        ctx = active_workflow()
        if ctx is not None and ctx.engine is self.engine:
            return (
                yield from get_event_in_workflow(ctx, ctx.take_step(), workflow_id, key, timeout)
            )
        return (yield from get_event_outside(self.engine, workflow_id, key, timeout))

    def get_all_events(self, workflow_id: str) -> dict[str, Any]:
        """Every event of a workflow with its latest value."""
        check_workflow_id(workflow_id)
        rows = drive_sync(
            self.engine, self._read(self.engine.statements.get_all_events(workflow_id))
        )
        return {row.key: row.value for row in rows}

    async def get_all_events_async(self, workflow_id: str) -> dict[str, Any]:
        """Async twin of ``get_all_events``."""
        check_workflow_id(workflow_id)
        statement = self.engine.statements.get_all_events(workflow_id)
        rows = await drive_async(self.engine, self._read(statement))
        return {row.key: row.value for row in rows}

    @staticmethod
    def _read(statement: Any) -> Protocol[Any]:
        return (yield Read(statement))

    # ---------------------------------------------------------------- streams

    def read_stream(
        self, workflow_id: str, key: str, offset: int = 0, timeout: float | None = None
    ) -> Iterator[Any]:
        """Values of a workflow's stream, live as they are written, from ``offset``.

        Ends when the stream is closed or its workflow finishes; with ``timeout``, also
        when no new value came for that long.
        """
        check_workflow_id(workflow_id)
        check_key(key)
        offset = _check_offset(offset)
        after, skip, watching = -1, offset, False
        while True:
            entries, ended = drive_sync(
                self.engine,
                next_stream_entries(
                    self.engine, workflow_id, key, after, skip, _deadline(timeout), watching
                ),
            )
            watching = True
            for entry in entries:
                if entry.closed:
                    return
                after, skip = entry.step, 0
                yield entry.value
            if ended:
                return

    async def read_stream_async(
        self, workflow_id: str, key: str, offset: int = 0, timeout: float | None = None
    ) -> AsyncIterator[Any]:
        """Async twin of ``read_stream``."""
        check_workflow_id(workflow_id)
        check_key(key)
        offset = _check_offset(offset)
        after, skip, watching = -1, offset, False
        while True:
            entries, ended = await drive_async(
                self.engine,
                next_stream_entries(
                    self.engine, workflow_id, key, after, skip, _deadline(timeout), watching
                ),
            )
            watching = True
            for entry in entries:
                if entry.closed:
                    return
                after, skip = entry.step, 0
                yield entry.value
            if ended:
                return

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

    def resume(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Run a cancelled, dead-lettered or waiting workflow again from its last
        checkpoint; a finished one is left as it is."""
        return drive_sync(self.engine, self._resume(workflow_id))

    async def resume_async(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Async twin of ``resume``."""
        return await drive_async(self.engine, self._resume(workflow_id))

    def _resume(self, workflow_id: str) -> Protocol[WorkflowHandle[Any]]:
        check_workflow_id(workflow_id)
        handle = yield from self._handle(workflow_id)
        yield Write(self.engine.statements.resume(workflow_id))
        return handle

    def set_delay(self, workflow_id: str, delay: float | datetime) -> bool:
        """Change when a queued, waiting workflow may start (seconds from now, or an
        aware datetime); False if it already started."""
        check_workflow_id(workflow_id)
        return drive_sync(self.engine, set_delay(self.engine, workflow_id, delay))

    async def set_delay_async(self, workflow_id: str, delay: float | datetime) -> bool:
        """Async twin of ``set_delay``."""
        check_workflow_id(workflow_id)
        return await drive_async(self.engine, set_delay(self.engine, workflow_id, delay))

    def fork(
        self, workflow_id: str, from_step: int, *, new_id: str | None = None
    ) -> WorkflowHandle[Any]:
        """A new workflow with the same inputs whose operations before ``from_step`` are
        copied (not re-run) and which runs again from there."""
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

    def wait_first(
        self, handles: Sequence[WorkflowHandle[Any]], timeout: float | None = None
    ) -> WorkflowHandle[Any] | None:
        """The first of ``handles`` to finish (None if none did within ``timeout``)."""
        ids = _handle_ids(handles)
        first = drive_sync(self.engine, first_finished(self.engine, ids, _deadline(timeout)))
        return _pick(handles, first)

    async def wait_first_async(
        self, handles: Sequence[WorkflowHandle[Any]], timeout: float | None = None
    ) -> WorkflowHandle[Any] | None:
        """Async twin of ``wait_first``."""
        ids = _handle_ids(handles)
        first = await drive_async(self.engine, first_finished(self.engine, ids, _deadline(timeout)))
        return _pick(handles, first)


def _check_offset(offset: object) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidArgument(f"offset must be a whole number >= 0, got {offset!r}")
    return offset


def _deadline(timeout: float | None) -> datetime | None:
    if timeout is None:
        return None
    return now() + timedelta(seconds=check_seconds(timeout, "timeout"))


def _handle_ids(handles: Sequence[WorkflowHandle[Any]]) -> list[str]:
    if not handles or not all(isinstance(h, WorkflowHandle) for h in handles):
        raise InvalidArgument("wait_first takes a non-empty list of workflow handles")
    return [h.id for h in handles]


def _pick(handles: Sequence[WorkflowHandle[Any]], first: str | None) -> WorkflowHandle[Any] | None:
    return next((h for h in handles if h.id == first), None)
