"""Durable waits and communication, written once as protocols: sleep, messages, events,
streams, and waiting for the first of several workflows.

A wait shorter than the engine's ``park_after`` blocks in place (woken by a database
notification, with a slow poll as the fallback). A longer one parks: the deadline and
what the workflow waits for are stored, the workflow's owner is released, and the stack
unwinds (``Parked``); any executor claims it again when it is due and replays it, which
is cheap because replay reads every recorded operation in one query.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from durably.errors import NonDeterminismError, WorkflowNotFound
from durably.execution.context import Recorded, WorkflowContext
from durably.execution.effects import Atomic, Protocol, Read, Wait, Watch, Write
from durably.execution.protocol import (
    Parked,
    check_recorded,
    explain_unwritten,
    guard,
    read_outcome,
    record,
)
from durably.names import check_name
from durably.options import now
from durably.status import Status
from durably.store.notifications import Kind
from durably.store.rows import StreamEntry

if TYPE_CHECKING:
    from durably.execution.host import Host

# How long an in-place wait goes between database checks when no notification came:
# a lost notification costs at most this much latency, never correctness.
POLL_INTERVAL = 1.0
_TIMED_OUT = json.dumps({"timeout": True})
# The kind (and name) of the operation a workflow's wait_first records.
WAIT_FIRST = "wait_first"


def check_topic(topic: object) -> str | None:
    """A topic: None (a topic of its own), or a name (the empty string is one)."""
    return None if topic is None else check_name(topic, "topic", allow_empty=True)


def check_key(key: object, what: str = "key") -> str:
    """An event or stream key, or an idempotency key: a name as ``durably.names`` allows."""
    return check_name(key, what)


def park(
    ctx: WorkflowContext,
    wake_at: datetime | None,
    kind: str,
    *,
    target: str | None = None,
    topic: str | None = None,
) -> Protocol[None]:
    """Release the workflow to wait in the database, unless what it waits for arrived."""
    if ctx.deadline is not None and (wake_at is None or ctx.deadline < wake_at):
        wake_at = ctx.deadline  # woken at its deadline to be cancelled
    statements = ctx.engine.statements
    # Lock what would wake us, so that a send or set_event racing with this park is seen
    # by one side: our row for a message; for an event, the target's events (its row may
    # not exist yet: a waiter can park before the workflow it waits for is started).
    if kind == "event" and target:
        lock = statements.lock_events(target)
    else:
        lock = statements.lock_workflow(ctx.workflow_id)
    park_statement = statements.park(
        workflow_id=ctx.workflow_id,
        epoch=ctx.epoch,
        wake_at=wake_at,
        wait_kind=kind,
        wait_target=target,
        wait_topic=topic,
    )
    rows = yield Atomic((lock, park_statement))
    if not rows:
        yield from explain_unwritten(ctx, 0, kind, kind)
        return
    if rows[0].parked:
        ctx.engine.parked(ctx.workflow_id, wake_at)
        raise Parked(ctx.workflow_id)


def wait_until(ctx: WorkflowContext, wake_at: datetime) -> Protocol[None]:
    """Block in place until ``wake_at`` (short waits) or park until then (long ones)."""
    cancel_key = (Kind.CANCELLED.key(ctx.workflow_id),)
    while True:
        remaining = (wake_at - now()).total_seconds()
        if remaining <= 0:
            return
        if remaining > ctx.engine.park_after:
            yield from park(ctx, wake_at, "sleep")
        since = yield Watch(cancel_key)
        yield from guard(ctx)
        yield Wait(cancel_key, since, remaining)
        yield from guard(ctx)


def sleep(ctx: WorkflowContext, position: int, seconds: float) -> Protocol[None]:
    """Durable sleep: the wake-up time is recorded first, so a restart sleeps only the rest."""
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, "sleep", "sleep")
        wake_at = datetime.fromisoformat(rec.output)
    else:
        yield from guard(ctx)
        started = now()
        wake_at = started + timedelta(seconds=seconds)
        yield from record(
            ctx, position, "sleep", "sleep", started, output=json.dumps(wake_at.isoformat())
        )
    yield from wait_until(ctx, wake_at)


def durable_deadline(ctx: WorkflowContext, position: int, timeout: float) -> Protocol[datetime]:
    """The deadline of the wait at ``position``: stored on first wait, reused on replay."""
    rows = yield Write(
        ctx.engine.statements.wait_deadline(
            workflow_id=ctx.workflow_id,
            epoch=ctx.epoch,
            step=position,
            deadline=now() + timedelta(seconds=timeout),
        )
    )
    if not rows:
        yield from explain_unwritten(ctx, position, "wait", "wait")
    deadline: datetime = rows[0].wait_deadline
    return deadline


def await_recorded(
    ctx: WorkflowContext,
    position: int,
    kind: str,
    name: str,
    timeout: float,
    keys: tuple[str, ...],
    attempt: Callable[[datetime], Protocol[tuple[bool, Any]]],
    park_target: str | None,
    park_topic: str | None,
) -> Protocol[Any]:
    """The shared shape of recv and get_event in a workflow: try ``attempt`` (which records
    what it finds), else wait (in place or parked) until the durable deadline, then record
    the timeout and return None."""
    started = now()
    deadline: datetime | None = None
    while True:
        yield from guard(ctx)
        since = yield Watch(keys)
        found, value = yield from attempt(started)
        if found:
            return value
        if deadline is None:
            deadline = yield from durable_deadline(ctx, position, timeout)
        remaining = (deadline - now()).total_seconds()
        if remaining <= 0:
            yield from record(ctx, position, name, kind, started, output=_TIMED_OUT)
            return None
        if remaining > ctx.engine.park_after:
            park_kind = "recv" if kind == "recv" else "event"
            yield from park(ctx, deadline, park_kind, target=park_target, topic=park_topic)
            continue  # what we wait for arrived meanwhile: take it
        yield Wait(keys, since, min(remaining, POLL_INTERVAL))


def recv(ctx: WorkflowContext, position: int, topic: str | None, timeout: float) -> Protocol[Any]:
    """Consume the oldest unconsumed message of ``topic``; None after the durable timeout."""
    name = "recv" if topic is None else f"recv:{topic}"
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, "recv", name)
        return None if rec.output.get("timeout") else rec.output["message"]

    def consume(started: datetime) -> Protocol[tuple[bool, Any]]:
        rows = yield Write(
            ctx.engine.statements.consume_message(
                workflow_id=ctx.workflow_id,
                epoch=ctx.epoch,
                step=position,
                name=name,
                topic=topic,
                started_at=started,
            )
        )
        got = rows[0]
        owned, recorded, output = got.owned, got.recorded, got.output
        earlier_name, earlier_kind = got.earlier_name, got.earlier_kind
        if not owned or (
            earlier_kind is not None and (earlier_kind, earlier_name) != ("recv", name)
        ):
            yield from explain_unwritten(ctx, position, "recv", name)
        if not recorded:
            return False, None
        # A retry may find its first attempt's record: a message, or the timeout.
        return True, None if output.get("timeout") else output["message"]

    keys = (Kind.MESSAGE.key(ctx.workflow_id), Kind.CANCELLED.key(ctx.workflow_id))
    return (
        yield from await_recorded(ctx, position, "recv", name, timeout, keys, consume, None, topic)
    )


def send(
    ctx: WorkflowContext,
    position: int,
    workflow_id: str,
    value: str,
    topic: str | None,
    idempotency_key: str | None,
) -> Protocol[None]:
    """Send a message from a workflow: recorded as its operation, delivered exactly once."""
    name = f"send:{workflow_id}"
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, "send", name)
        return
    yield from guard(ctx)
    rows = yield Atomic(
        (
            ctx.engine.statements.lock_workflow(workflow_id),
            ctx.engine.statements.send_from_workflow(
                sender_id=ctx.workflow_id,
                epoch=ctx.epoch,
                step=position,
                name=name,
                started_at=now(),
                workflow_id=workflow_id,
                topic=topic,
                value=value,
                idempotency_key=idempotency_key or f"{ctx.workflow_id}:{position}",
            ),
        )
    )
    sent = rows[0]
    owned, exists, recorded = sent.owned, sent.found, sent.recorded
    if not owned:
        yield from explain_unwritten(ctx, position, "send", name)
    if not exists:
        raise WorkflowNotFound(workflow_id)
    if not recorded:
        yield from explain_unwritten(ctx, position, "send", name)


def send_outside(
    engine: Host,
    workflow_id: str,
    value: str,
    topic: str | None,
    idempotency_key: str | None,
) -> Protocol[None]:
    """Send a message from outside any workflow (the same key delivers once)."""
    rows = yield Atomic(
        (
            engine.statements.lock_workflow(workflow_id),
            engine.statements.send_message(
                workflow_id=workflow_id, topic=topic, value=value, idempotency_key=idempotency_key
            ),
        )
    )
    if not rows[0].found:
        raise WorkflowNotFound(workflow_id)


def set_event(
    ctx: WorkflowContext, position: int, key: str, value: str, *, in_step: bool
) -> Protocol[None]:
    """Set an event's latest value; from a workflow it is an operation of its own."""
    if not in_step:
        rec = ctx.recorded.get(position)
        if rec is not None:
            check_recorded(ctx, rec, "set_event", key)
            return
        yield from guard(ctx)
    rows = yield Atomic(
        (
            # the events first, then the row: a park waiting for this event takes the
            # events' lock alone, a message's send the row alone (one order, no deadlock)
            ctx.engine.statements.lock_events(ctx.workflow_id),
            ctx.engine.statements.lock_workflow(ctx.workflow_id),
            ctx.engine.statements.set_event(
                workflow_id=ctx.workflow_id,
                epoch=ctx.epoch,
                step=position,
                key=key,
                value=value,
                started_at=now(),
                step_op=not in_step,
            ),
        )
    )
    owned, recorded = rows[0].owned, rows[0].recorded
    if not owned or (not in_step and not recorded):
        yield from explain_unwritten(ctx, position, "set_event", key)


def read_event(engine: Host, workflow_id: str, key: str) -> Protocol[tuple[bool, Any]]:
    rows = yield Read(engine.statements.get_event(workflow_id, key))
    return (True, rows[0].value) if rows else (False, None)


def get_event_outside(engine: Host, workflow_id: str, key: str, timeout: float) -> Protocol[Any]:
    """The latest value of an event, waiting up to ``timeout`` s for it to exist; None
    then, also for a workflow that does not exist (it may be started while we wait)."""
    keys = (Kind.EVENT.key(workflow_id),)
    deadline = now() + timedelta(seconds=timeout)
    while True:
        since = yield Watch(keys)
        found, value = yield from read_event(engine, workflow_id, key)
        if found:
            return value
        remaining = (deadline - now()).total_seconds()
        if remaining <= 0:
            return None
        yield Wait(keys, since, min(remaining, POLL_INTERVAL))


def get_event_in_workflow(
    ctx: WorkflowContext, position: int, workflow_id: str, key: str, timeout: float
) -> Protocol[Any]:
    """get_event from a workflow: the value seen (or the timeout) is recorded for replay."""
    name = f"get_event:{workflow_id}:{key}"
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, "get_event", name)
        return None if rec.output.get("timeout") else rec.output["value"]

    def look(started: datetime) -> Protocol[tuple[bool, Any]]:
        found, value = yield from read_event(ctx.engine, workflow_id, key)
        if found:
            output = json.dumps({"value": value})
            yield from record(ctx, position, name, "get_event", started, output=output)
        return found, value

    keys = (Kind.EVENT.key(workflow_id), Kind.CANCELLED.key(ctx.workflow_id))
    return (
        yield from await_recorded(
            ctx, position, "get_event", name, timeout, keys, look, workflow_id, key
        )
    )


def write_stream(
    ctx: WorkflowContext, position: int, key: str, value: str | None, *, closed: bool
) -> Protocol[None]:
    """Append to (or close) a stream; the entry and the operation are one fenced write."""
    kind = "close_stream" if closed else "write_stream"
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, kind, key)
        return
    yield from guard(ctx)
    rows = yield Write(
        ctx.engine.statements.write_stream(
            workflow_id=ctx.workflow_id,
            epoch=ctx.epoch,
            step=position,
            key=key,
            value=value,
            closed=closed,
            started_at=now(),
        )
    )
    owned, recorded = rows[0].owned, rows[0].recorded
    if not owned or not recorded:
        yield from explain_unwritten(ctx, position, kind, key)


def next_stream_entries(
    engine: Host,
    workflow_id: str,
    key: str,
    after: int,
    skip: int,
    deadline: datetime | None,
    watching: bool,
) -> Protocol[tuple[list[StreamEntry], bool] | None]:
    """Wait for stream entries after ``after``; returns (entries, ended), or None when
    the deadline passed with nothing new while the stream is still open.

    The stream has ended when a closing entry is read, or when the writing workflow is
    finished (success, error or cancel) and nothing more is left to read.
    """
    keys = tuple(kind.key(workflow_id) for kind in (Kind.STREAM, Kind.FINISHED, Kind.CANCELLED))
    if not watching:
        yield Write(engine.statements.watch(workflow_id))
    while True:
        since = yield Watch(keys)
        rows = yield Read(engine.statements.read_stream(workflow_id, key, after, skip))
        if rows:
            return list(rows), False
        outcome = yield from read_outcome(engine, workflow_id)
        if outcome is None:
            raise WorkflowNotFound(workflow_id)
        if Status(outcome.status).is_final:
            rows = yield Read(engine.statements.read_stream(workflow_id, key, after, skip))
            return list(rows), True
        remaining = POLL_INTERVAL
        if deadline is not None:
            remaining = min(remaining, (deadline - now()).total_seconds())
            if remaining <= 0:
                return None
        yield Wait(keys, since, remaining)


def first_finished(
    engine: Host, workflow_ids: list[str], deadline: datetime | None
) -> Protocol[str | None]:
    """The first of several workflows to finish (None at the deadline)."""
    keys = tuple(f"{kind}:{wid}" for wid in workflow_ids for kind in ("d", "c"))
    for wid in workflow_ids:
        yield Write(engine.statements.watch(wid))
    while True:
        since = yield Watch(keys)
        for wid in workflow_ids:
            outcome = yield from read_outcome(engine, wid)
            if outcome is None:
                raise WorkflowNotFound(wid)
            if Status(outcome.status).is_final:
                return wid
        remaining = POLL_INTERVAL
        if deadline is not None:
            remaining = min(remaining, (deadline - now()).total_seconds())
            if remaining <= 0:
                return None
        yield Wait(keys, since, remaining)


def wait_first_position(ctx: WorkflowContext) -> tuple[Recorded | None, int | None]:
    """Where a workflow's ``wait_first`` records its answer, decided when it is called:
    (what an earlier run recorded there, or None; the position, or None for an
    execution recorded before wait_first was recorded, which replays it live and
    unrecorded, as it ran then, so that its later operations keep their numbers)."""
    found = ctx.peek()
    if found is not None and found.kind == WAIT_FIRST:
        return found, ctx.take_step()
    if not ctx.past_history():
        return None, None
    return None, ctx.take_step()


def first_finished_in_workflow(
    ctx: WorkflowContext,
    found: Recorded | None,
    position: int | None,
    workflow_ids: list[str],
    deadline: datetime | None,
) -> Protocol[str | None]:
    """``wait_first`` in a workflow's body: the first run's answer is recorded, and a
    replay gets it again whatever has finished since (None: none did by the deadline)."""
    if found is not None:
        first: str | None = found.output["first"]
        if first is not None and first not in workflow_ids:
            raise NonDeterminismError(
                ctx.workflow_id, found.step, f"{WAIT_FIRST} -> {first}",
                f"{WAIT_FIRST} of {workflow_ids}",
            )  # fmt: skip
        return first
    started = now()
    first = yield from first_finished(ctx.engine, workflow_ids, deadline)
    if position is not None:
        yield from guard(ctx)
        output = json.dumps({"first": first})
        yield from record(ctx, position, WAIT_FIRST, WAIT_FIRST, started, output=output)
    return first
