"""Putting workflows on queues, written once: enqueue (top-level or from a workflow),
debounce and delay changes. Claiming is the runtime's job (``runtime.dispatch``)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from durably import codec as codec_module
from durably.errors import DuplicateWorkflow, InvalidArgument, WorkflowConflict, WorkflowNotFound
from durably.execution import observe
from durably.execution.context import WorkflowContext
from durably.execution.effects import Protocol, Read, Write
from durably.execution.protocol import Started, check_recorded, guard, read_outcome, record
from durably.execution.specs import WorkflowSpec
from durably.options import WorkflowOptions, delay_until, now

if TYPE_CHECKING:
    from durably.execution.host import Host
    from durably.store.statements import Statement

# Runs of one enqueue_many that go in one statement (and one commit).
MANY_AT_ONCE = 1000


def check_priority(engine: Host, queue: str, priority: int | None) -> Protocol[None]:
    """A priority is refused on a queue declared without ``priority=True`` (by this app,
    else as stored). Enqueue never needs the queue's row: without a priority nothing is
    read, and a queue nobody declared yet takes one (its declaration drops it if the
    queue has no priorities)."""
    if priority is None:
        return
    spec = engine.queues.get(queue)
    if spec is not None:
        allows_priority = spec.priority
    else:
        rows = yield Read(engine.queue_statements.get_queue(queue))
        allows_priority = not rows or bool(rows[0].priority)
    if not allows_priority:
        raise InvalidArgument(
            f"queue {queue!r} was declared without priority=True; priorities are refused "
            f"(declare it with app.queue({queue!r}, priority=True) to use them)"
        )


def enqueue(
    engine: Host,
    spec: WorkflowSpec,
    options: WorkflowOptions,
    workflow_id: str,
    inputs: str,
    parent: tuple[str, int] | None = None,
) -> Protocol[Started]:
    """Put a workflow on its queue; an existing ID (or held dedup key) is attached to."""
    assert options.queue is not None
    yield from check_priority(engine, options.queue, options.priority)
    statement = _enqueue_statement(engine, spec, options, workflow_id, inputs, parent)
    # Enqueued by a caller (not a workflow's child): it waits only for its handle.
    rows = yield Write(statement, for_caller=parent is None)
    if rows:
        return Started(workflow_id, None, queue_declared=rows[0].queue_declared)
    return (yield from _attach(engine, spec, options, workflow_id, inputs, parent))


def _enqueue_statement(
    engine: Host,
    spec: WorkflowSpec,
    options: WorkflowOptions,
    workflow_id: str,
    inputs: str,
    parent: tuple[str, int] | None,
) -> Statement:
    assert options.queue is not None
    return engine.queue_statements.enqueue(
        workflow_id=workflow_id,
        name=spec.name,
        inputs=inputs,
        max_recovery_attempts=spec.max_recovery_attempts,
        codec=engine.codec.name,
        timeout=options.timeout,
        queue=options.queue,
        priority=options.priority,
        dedup_key=options.dedup_key,
        partition_key=options.partition_key,
        available_at=delay_until(options.delay) if options.delay is not None else None,
        parent_id=parent[0] if parent else None,
        parent_step=parent[1] if parent else None,
        app_version=engine.versions.enqueued,
    )


def _attach(
    engine: Host,
    spec: WorkflowSpec,
    options: WorkflowOptions,
    workflow_id: str,
    inputs: str,
    parent: tuple[str, int] | None,
) -> Protocol[Started]:
    """An enqueue that inserted nothing: its ID (or dedup key) is taken. The same ID of
    the same workflow attaches to it; a dedup key held by another does as asked."""
    assert options.queue is not None
    existing = yield Read(engine.statements.get_outcome(workflow_id))
    if existing:
        if existing[0].name != spec.name:
            raise WorkflowConflict(workflow_id, existing[0].name, spec.name)
        return Started(workflow_id, None)  # the same ID twice runs once
    if options.dedup_key is not None:
        holder = yield Read(engine.queue_statements.dedup_holder(options.queue, options.dedup_key))
        if holder:
            if options.if_duplicate == "existing":
                return Started(holder[0].id, None)
            raise DuplicateWorkflow(options.queue, options.dedup_key, holder[0].id)
    # The holder finished between the two reads: the key is free again.
    return (yield from enqueue(engine, spec, options, workflow_id, inputs, parent))


def enqueue_many(
    engine: Host,
    spec: WorkflowSpec,
    options: WorkflowOptions,
    runs: list[tuple[str, str]],
) -> Protocol[list[Started]]:
    """Put many runs of one workflow on its queue, given as (workflow ID, inputs): one
    statement (and one notification per queue) for each ``MANY_AT_ONCE`` of them. An
    existing ID attaches to its workflow, as for ``enqueue``."""
    assert options.queue is not None and options.dedup_key is None
    yield from check_priority(engine, options.queue, options.priority)
    if options.delay is not None:  # one due time for all, taken now
        options = replace(options, delay=delay_until(options.delay))
    started: list[Started] = []
    for first in range(0, len(runs), MANY_AT_ONCE):
        chunk = runs[first : first + MANY_AT_ONCE]
        statements = [
            _enqueue_statement(engine, spec, options, workflow_id, inputs, None)
            for workflow_id, inputs in chunk
        ]
        rows = yield Write(engine.queue_statements.enqueue_many(statements), for_caller=True)
        made = {row.id: row for row in rows}
        for workflow_id, inputs in chunk:
            row = made.pop(workflow_id, None)
            if row is not None:
                started.append(Started(workflow_id, None, queue_declared=row.queue_declared))
            else:
                attached = yield from _attach(engine, spec, options, workflow_id, inputs, None)
                started.append(attached)
    return started


def enqueue_child(
    ctx: WorkflowContext,
    position: int,
    spec: WorkflowSpec,
    options: WorkflowOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Protocol[Started]:
    """Enqueue from a workflow: a child with a deterministic ID, recorded in the parent."""
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, "child", spec.name, spec.former)
        assert rec.child_id is not None
        return Started(rec.child_id, None)
    yield from guard(ctx)
    started_at = now()
    child_id = options.id or f"{ctx.workflow_id}-{position}"
    inputs = codec_module.dumps_args(ctx.engine.codec, args, kwargs)
    if ctx.engine.observers:
        inputs = observe.stamp(ctx.engine, child_id, spec.name, "enqueue", inputs, options.queue)
    started = yield from enqueue(
        ctx.engine, spec, options, child_id, inputs, parent=(ctx.workflow_id, position)
    )
    yield from record(ctx, position, spec.name, "child", started_at, child_id=started.workflow_id)
    return started


def debounce(
    engine: Host,
    spec: WorkflowSpec,
    queue: str,
    key: str,
    period: float,
    max_wait: float | None,
    inputs: str,
    timeout: float | None,
) -> Protocol[str]:
    """Collapse repeated calls within ``period`` into one run with the latest arguments."""
    rows = yield Write(
        engine.queue_statements.debounce(
            workflow_id=str(uuid.uuid4()),
            name=spec.name,
            inputs=inputs,
            max_recovery_attempts=spec.max_recovery_attempts,
            codec=engine.codec.name,
            timeout=timeout,
            queue=queue,
            debounce_key=key,
            period=period,
            max_wait=max_wait,
        )
    )
    workflow_id: str = rows[0].id
    return workflow_id


def set_delay(engine: Host, workflow_id: str, delay: float | Any) -> Protocol[bool]:
    """Move the start of a waiting (ENQUEUED or DELAYED) workflow; False if it started,
    ``WorkflowNotFound`` if there is no such workflow (a mistyped ID is not "started")."""
    rows = yield Write(engine.queue_statements.set_delay(workflow_id, delay_until(delay)))
    if rows:
        return True
    if (yield from read_outcome(engine, workflow_id)) is None:
        raise WorkflowNotFound(workflow_id)
    return False
