"""The engine's decisions, written once: start, step, child, finish, replay and fencing.

Each function is a generator of effects (see ``effects``); ``drive_sync`` and
``drive_async`` run them. A fresh execution never reads before it writes: a step is
one fenced INSERT, a workflow start one INSERT, its outcome one UPDATE. Reads happen
only on the rare paths: an ID that already exists, a fenced write that touched no row.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from durably import codec as codec_module
from durably.errors import (
    DatabaseUnavailable,
    LostOwnership,
    NonDeterminismError,
    StepRetriesExceeded,
    ValueEncodingError,
    WorkflowCancelled,
    WorkflowConflict,
    WorkflowNotFound,
)
from durably.execution import observe
from durably.execution.context import Recorded, WorkflowContext, in_step, step_name
from durably.execution.effects import Call, HoldLease, Protocol, Read, Sleep, StepFailed, Write
from durably.execution.specs import StepSpec, WorkflowSpec
from durably.options import now
from durably.status import Status
from durably.store.rows import Outcome

if TYPE_CHECKING:
    from durably.execution.host import Host


class Started(NamedTuple):
    """A workflow start: its ID, and the epoch and deadline when this call created it;
    for work this call enqueued, whether its queue was declared (by anyone) yet."""

    workflow_id: str
    epoch: int | None
    deadline: datetime | None = None
    queue_declared: bool = True


class Parked(BaseException):
    """Unwinds a workflow that released its thread to wait in the database.

    A BaseException so that ``except Exception`` in user code cannot swallow it.
    """


def guard(ctx: WorkflowContext) -> Protocol[None]:
    """Before each durable operation: stop if cancelled or past the deadline."""
    if ctx.cancelled:
        raise WorkflowCancelled(ctx.workflow_id)
    if ctx.deadline is not None and now() >= ctx.deadline:
        yield from cancel_for_timeout(ctx)


def hold_lease(ctx: WorkflowContext) -> Protocol[None]:
    """Before user code runs: this executor holds a valid lease, and, if the lease may
    have lapsed since this run last knew, the workflow is still this run's."""
    # A lease that is valid now needs no trip through the driver (one per step).
    generation = ctx.engine.lease_held()
    if generation is None:
        generation = yield HoldLease()
    if ctx.superseded:
        raise LostOwnership(
            f"workflow {ctx.workflow_id!r} was started again in this process (epoch "
            f"{ctx.epoch} is superseded); this run stops before its next step"
        )
    if ctx.epoch < ctx.engine.epoch_floor:
        raise LostOwnership(
            f"workflow {ctx.workflow_id!r} was claimed before the database failed over "
            f"(epoch {ctx.epoch}); it replays from the new primary's record"
        )
    if generation == ctx.lease_generation:
        return
    rows = yield Read(ctx.engine.statements.inspect_operation(ctx.workflow_id, 0))
    if not rows:
        raise WorkflowNotFound(ctx.workflow_id)
    epoch, status = rows[0].epoch, rows[0].status
    if status == Status.CANCELLED:
        raise WorkflowCancelled(ctx.workflow_id)
    if epoch != ctx.epoch or status != Status.PENDING:
        raise LostOwnership(
            f"workflow {ctx.workflow_id!r} was taken over while this executor's lease "
            f"lapsed (epoch {epoch}, this run holds {ctx.epoch}); this run stops"
        )
    ctx.lease_generation = generation


def cancel_for_timeout(ctx: WorkflowContext) -> Protocol[None]:
    """The deadline passed: cancel the workflow and its descendants, then stop."""
    ctx.cancelled = True
    yield Write(ctx.engine.statements.cancel(ctx.workflow_id, children=True))
    raise WorkflowCancelled(ctx.workflow_id)


def start_top(
    engine: Host,
    spec: WorkflowSpec,
    workflow_id: str,
    inputs: str,
    timeout: float | None = None,
    *,
    for_caller: bool = False,
) -> Protocol[Started]:
    """Create a top-level workflow row, owned by this executor.

    Returns its ID and fencing epoch when this call created it; the epoch is None when
    the ID already existed (the caller then attaches to it instead of running it again).
    ``for_caller``: a start in the background, whose caller waits only for this row
    (``Write.for_caller``).
    """
    try:
        rows = yield Write(
            engine.statements.insert_workflow(
                workflow_id=workflow_id,
                name=spec.name,
                inputs=inputs,
                executor_id=engine.executor_id,
                max_recovery_attempts=spec.max_recovery_attempts,
                codec=engine.codec.name,
                timeout=timeout,
                app_version=engine.versions.current,
            ),
            for_caller=for_caller,
        )
    except DatabaseUnavailable:
        # It may exist, owned here and run by nobody: the executor loop takes it back.
        engine.abandon(workflow_id, 1)
        raise
    if rows:
        return Started(workflow_id, rows[0].epoch, rows[0].deadline)
    rows = yield Read(engine.statements.get_outcome(workflow_id))
    if not rows:
        raise WorkflowNotFound(workflow_id)
    existing = rows[0].name
    if existing != spec.name:
        raise WorkflowConflict(workflow_id, existing, spec.name)
    return Started(workflow_id, None)


def check_recorded(
    ctx: WorkflowContext, rec: Recorded, kind: str, name: str, former: str | None = None
) -> None:
    """A replay must call, at each recorded position, the operation recorded there.

    ``former`` is the name a step or child declared without ``name=`` had by default in
    durably 0.1 (``<module>.<qualname>``): the same function recorded under it matches.
    Any other difference of name fails loudly (``NonDeterminismError``), never silently.
    """
    if rec.kind != kind or (rec.name != name and (former is None or rec.name != former)):
        raise NonDeterminismError(
            ctx.workflow_id, rec.step, f"{rec.kind} {rec.name}", f"{kind} {name}"
        )


def replay_value(ctx: WorkflowContext, rec: Recorded, hint: Any) -> Any:
    """The recorded result of an operation, or its recorded error raised again."""
    if rec.error is not None:
        raise codec_module.load_error(rec.error)
    return ctx.engine.codec.load(rec.output, hint)


def run_step(
    ctx: WorkflowContext,
    position: int,
    spec: StepSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Protocol[Any]:
    """Replay a recorded step, or run it (with retries) and record its outcome."""
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, "step", spec.name, spec.former)
        return replay_value(ctx, rec, spec.return_hint)
    yield from guard(ctx)
    started = now()
    errors: list[BaseException] = []
    while True:
        yield from hold_lease(ctx)
        token, named = in_step.set(position), step_name.set(spec.name)
        try:
            result = yield Call(spec.fn, args, kwargs, spec.is_async)
        except Exception as exc:
            failure = yield from attempt_failed(ctx, position, spec, errors, exc)
            if failure is None:
                continue
            break
        finally:
            in_step.reset(token)
            step_name.reset(named)
        # Encoding fails before anything is written: the value is rejected at the call.
        output = ctx.engine.codec.dumps(result)
        yield from record(
            ctx, position, spec.name, "step", started, output=output, attempts=len(errors) + 1
        )
        return result
    yield from record(
        ctx,
        position,
        spec.name,
        "step",
        started,
        error=codec_module.dump_error(failure),
        attempts=len(errors),
    )
    raise failure


def attempt_failed(
    ctx: WorkflowContext,
    position: int,
    spec: StepSpec,
    errors: list[BaseException],
    exc: Exception,
    retryable: bool = True,
) -> Protocol[Exception | None]:
    """An attempt of a step's body raised ``exc``: reported, then None to run it again
    after the retry policy's delay, or the error that is the step's outcome."""
    errors.append(exc)
    attempt = len(errors)
    retry = retryable and attempt <= spec.retries and spec.should_retry(exc)
    delay = spec.delay_before(attempt) if retry else None
    yield StepFailed(
        ctx.workflow_id, ctx.name, spec.name, position, attempt, spec.retries + 1, exc, delay
    )
    if delay is not None:
        yield Sleep(delay)
        return None
    return exc if attempt == 1 else StepRetriesExceeded(spec.name, errors)


def record(
    ctx: WorkflowContext,
    position: int,
    name: str,
    kind: str,
    started: datetime,
    *,
    output: str | None = None,
    error: str | None = None,
    child_id: str | None = None,
    attempts: int | None = None,
) -> Protocol[None]:
    """Write one operation's checkpoint, fenced by the workflow's epoch (``attempts``: the
    runs of a step's body it took, shown in listings)."""
    written = yield Write(
        ctx.engine.statements.record_operation(
            workflow_id=ctx.workflow_id,
            epoch=ctx.epoch,
            step=position,
            name=name,
            kind=kind,
            output=output,
            error=error,
            started_at=started,
            child_id=child_id,
            attempts=attempts,
        )
    )
    if written == 1:
        return
    yield from explain_unwritten(ctx, position, kind, name)


def explain_unwritten(ctx: WorkflowContext, position: int, kind: str, name: str) -> Protocol[None]:
    """A fenced write touched no row: lost ownership, cancelled, or already recorded."""
    rows = yield Read(ctx.engine.statements.inspect_operation(ctx.workflow_id, position))
    if not rows:
        raise WorkflowNotFound(ctx.workflow_id)
    found = rows[0]
    epoch, status, rec_name, rec_kind = found.epoch, found.status, found.name, found.kind
    if status == Status.CANCELLED:
        raise WorkflowCancelled(ctx.workflow_id)
    if epoch != ctx.epoch or status != Status.PENDING:
        raise LostOwnership(
            f"workflow {ctx.workflow_id!r} is now owned by another executor (epoch "
            f"{epoch}, this run holds {ctx.epoch}); this run stops without writing"
        )
    if rec_name is not None and (rec_name != name or rec_kind != kind):
        raise NonDeterminismError(
            ctx.workflow_id, position, f"{rec_kind} {rec_name}", f"{kind} {name}"
        )
    # Same owner, same operation already recorded: keep the recorded value.


def start_child(
    ctx: WorkflowContext,
    position: int,
    spec: WorkflowSpec,
    workflow_id: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None = None,
) -> Protocol[Started]:
    """Start (or on replay re-attach to) a child workflow at ``position`` of its parent.

    Returns the child's ID and, when this call created it, its epoch (the caller then
    runs it); None means the child already exists and is run or recovered elsewhere.
    """
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, "child", spec.name, spec.former)
        assert rec.child_id is not None
        return Started(rec.child_id, None)
    yield from guard(ctx)
    child_id = workflow_id or f"{ctx.workflow_id}-{position}"
    engine = ctx.engine
    inputs = codec_module.dumps_args(engine.codec, args, kwargs)
    if engine.observers:
        inputs = observe.stamp(engine, child_id, spec.name, "child", inputs)
    try:
        rows = yield Write(
            engine.statements.start_child(
                parent_id=ctx.workflow_id,
                epoch=ctx.epoch,
                step=position,
                workflow_id=child_id,
                name=spec.name,
                inputs=inputs,
                executor_id=engine.executor_id,
                max_recovery_attempts=spec.max_recovery_attempts,
                codec=engine.codec.name,
                timeout=timeout,
                app_version=engine.versions.current,
            )
        )
    except DatabaseUnavailable:
        engine.abandon(child_id, 1)  # as in start_top
        raise
    started = rows[0]
    owned, child_epoch, recorded = started.owned, started.child_epoch, started.recorded
    if not owned or not recorded:
        yield from explain_unwritten(ctx, position, "child", spec.name)
    if child_epoch is None:
        existing = yield Read(engine.statements.get_outcome(child_id))
        if existing and existing[0].name != spec.name:
            raise WorkflowConflict(child_id, existing[0].name, spec.name)
        return Started(child_id, None)
    return Started(child_id, child_epoch, started.child_deadline)


def run_body(
    ctx: WorkflowContext, spec: WorkflowSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Protocol[Any]:
    """Run (or replay) the workflow function, then record its outcome, fenced."""
    try:
        yield from hold_lease(ctx)
        result = yield Call(spec.fn, args, kwargs, spec.is_async)
    except (LostOwnership, DatabaseUnavailable):
        raise  # not the workflow's own outcome: left for its owner or for recovery
    except WorkflowCancelled as exc:
        if ctx.cancelled or exc.workflow_id == ctx.workflow_id:
            raise  # this workflow was cancelled: its status says so already
        if ctx.deadline is not None and now() >= ctx.deadline:
            # A child reached the deadline it inherited first: so did this workflow.
            yield from cancel_for_timeout(ctx)
        yield from finish(ctx, Status.ERROR, error=codec_module.dump_error(exc))
        raise
    except Exception as exc:
        yield from finish(ctx, Status.ERROR, error=codec_module.dump_error(exc))
        raise
    try:
        output = ctx.engine.codec.dumps(result)
    except ValueEncodingError as exc:
        yield from finish(ctx, Status.ERROR, error=codec_module.dump_error(exc))
        raise
    yield from finish(ctx, Status.SUCCESS, output=output)
    return result


def finish(
    ctx: WorkflowContext, status: Status, *, output: str | None = None, error: str | None = None
) -> Protocol[None]:
    rows = yield Write(
        ctx.engine.statements.finish_workflow(
            workflow_id=ctx.workflow_id,
            epoch=ctx.epoch,
            status=status.value,
            output=output,
            error=error,
        )
    )
    if rows[0].finished != 1:
        rows = yield Read(ctx.engine.statements.inspect_operation(ctx.workflow_id, 0))
        if rows and rows[0].epoch == ctx.epoch and rows[0].status == status:
            # A retry after a lost reply: this run's own outcome is the one recorded.
            ctx.finished = True
            return
        if rows and rows[0].status == Status.CANCELLED:
            raise WorkflowCancelled(ctx.workflow_id)
        raise LostOwnership(
            f"workflow {ctx.workflow_id!r} is no longer owned by this run (epoch {ctx.epoch}); "
            f"its outcome is recorded by the executor that took it over"
        )
    ctx.finished = True


def load_recorded_many(
    engine: Host, workflow_ids: list[str]
) -> Protocol[dict[str, dict[int, Recorded]]]:
    """The recorded operations of many workflows, in one query (recovering a batch)."""
    recorded: dict[str, dict[int, Recorded]] = {wid: {} for wid in workflow_ids}
    if workflow_ids:
        rows = yield Read(engine.statements.load_operations_many(workflow_ids))
        for op in rows:
            recorded[op.workflow_id][op.step] = Recorded(
                op.step, op.name, op.kind, op.output, op.error, op.child_id
            )
    return recorded


def read_outcome(engine: Host, workflow_id: str) -> Protocol[Outcome | None]:
    """A workflow's name, status and outcome; None when it does not exist."""
    rows = yield Read(engine.statements.get_outcome(workflow_id))
    outcome: Outcome | None = rows[0] if rows else None
    return outcome
