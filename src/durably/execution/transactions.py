"""Transaction steps: the user's SQL and its checkpoint commit together, exactly once.

On the app's own database the checkpoint is the step's fenced operation row, written in
the user's transaction: a taken-over owner writes no row and its transaction rolls back.
On another database (``database=``) the checkpoint is a row of that database's own small
table (``store.app_database``), written in the user's transaction; the operation row in
the app's database follows, fenced as usual. Either way, whenever the outcome of a
commit is unknown or no checkpoint row was written, the recorded checkpoint is read
before anything runs again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from durably import codec as codec_module
from durably.errors import (
    ConnectionLost,
    LostOwnership,
    NonDeterminismError,
    TransactionConflict,
    TransactionMisuse,
    ValueEncodingError,
    WorkflowCancelled,
    WorkflowNotFound,
)
from durably.execution.context import Recorded, WorkflowContext, in_step, step_name
from durably.execution.effects import LeaseMoved, Protocol, Read, Sleep, Transact
from durably.execution.protocol import (
    attempt_failed,
    check_recorded,
    guard,
    hold_lease,
    record,
    replay_value,
)
from durably.execution.specs import TransactionSpec
from durably.options import now
from durably.status import Status
from durably.store.statements import Statement

if TYPE_CHECKING:
    from durably.execution.host import Host

KIND = "transaction"


def run_transaction(
    ctx: WorkflowContext,
    position: int,
    spec: TransactionSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Protocol[Any]:
    """Replay a recorded transaction, or run it (conflicts and step retries included) and
    commit it with its checkpoint."""
    rec = ctx.recorded.get(position)
    if rec is not None:
        check_recorded(ctx, rec, KIND, spec.name, spec.former)
        return replay_value(ctx, rec, spec.return_hint)
    yield from guard(ctx)
    started = now()
    errors: list[BaseException] = []
    conflicts = 0
    while True:
        yield from hold_lease(ctx)
        encoded: list[str] = []
        effect = Transact(
            spec.name,
            spec.fn,
            args,
            kwargs,
            spec.isolation,
            spec.database,
            _checkpoint(ctx, position, spec, started, encoded, len(errors) + 1),
            spec.pipeline,
            ctx.lease_generation,
        )
        token, named = in_step.set(position), step_name.set(spec.name)
        try:
            done = yield effect
        except LeaseMoved:
            continue  # nothing ran: through the lease gate again
        except ConnectionLost:
            done = None  # the commit may have happened: the checkpoint says
        except TransactionConflict as exc:
            conflicts += 1
            if (yield from _again_after_conflict(spec, conflicts)):
                continue
            failure = yield from attempt_failed(ctx, position, spec, errors, exc)
            if failure is None:
                conflicts = 0
                continue
            break
        except ValueEncodingError:
            raise  # the result cannot be stored: refused at the call, as for steps
        except Exception as exc:
            # Misuse would do the same again: it is the step's outcome at once.
            retryable = not isinstance(exc, TransactionMisuse)
            failure = yield from attempt_failed(ctx, position, spec, errors, exc, retryable)
            if failure is None:
                continue
            break
        finally:
            in_step.reset(token)
            step_name.reset(named)
        if done is not None and done.committed:
            if spec.database is not None:
                yield from record(
                    ctx,
                    position,
                    spec.name,
                    KIND,
                    started,
                    output=encoded[0],
                    attempts=len(errors) + 1,
                )
            return done.value
        found = yield from _look_up(ctx, position, spec, started)
        if found is not None:
            return replay_value(ctx, found, spec.return_hint)
        # Not committed, and the workflow is still this run's: run it again.
    yield from record(
        ctx,
        position,
        spec.name,
        KIND,
        started,
        error=codec_module.dump_error(failure),
        attempts=len(errors),
    )
    raise failure


def _checkpoint(
    ctx: WorkflowContext,
    position: int,
    spec: TransactionSpec,
    started: datetime,
    encoded: list[str],
    attempts: int,
) -> Any:
    """The statement written in the user's transaction, built from its result."""
    engine = ctx.engine

    def build(value: Any) -> Statement:
        output = engine.codec.dumps(value)  # ValueEncodingError rolls the transaction back
        encoded.append(output)
        if spec.database is not None:
            return engine.app_statements(spec.database).record_transaction(
                ctx.workflow_id, position, output
            )
        return engine.statements.record_transaction_operation(
            workflow_id=ctx.workflow_id,
            epoch=ctx.epoch,
            step=position,
            name=spec.name,
            output=output,
            started_at=started,
            attempts=attempts,
        )

    return build


def _look_up(
    ctx: WorkflowContext, position: int, spec: TransactionSpec, started: datetime
) -> Protocol[Recorded | None]:
    """After a rollback by fencing or a commit of unknown outcome: what is recorded at
    ``position`` (None: nothing, and the workflow is still this run's)."""
    engine = ctx.engine
    if spec.database is not None:
        rows = yield Read(
            engine.app_statements(spec.database).transaction_output(ctx.workflow_id, position),
            database=spec.database,
        )
        if not rows:
            yield from _still_mine(ctx)
            return None
        # Committed there (by this run or a predecessor): the app's database learns it now.
        found = rows[0]
        yield from record(ctx, position, spec.name, KIND, started, output=found.text)
        return Recorded(position, spec.name, KIND, found.output, None, None)
    rows = yield Read(engine.statements.inspect_operation(ctx.workflow_id, position))
    if not rows:
        raise WorkflowNotFound(ctx.workflow_id)
    found = rows[0]
    _check_owner(ctx, found.epoch, found.status)
    if found.name is None:
        return None
    if found.name != spec.name or found.kind != KIND:
        raise NonDeterminismError(
            ctx.workflow_id, position, f"{found.kind} {found.name}", f"{KIND} {spec.name}"
        )
    return Recorded(position, found.name, found.kind, found.output, found.error, None)


def _still_mine(ctx: WorkflowContext) -> Protocol[None]:
    rows = yield Read(ctx.engine.statements.inspect_operation(ctx.workflow_id, 0))
    if not rows:
        raise WorkflowNotFound(ctx.workflow_id)
    _check_owner(ctx, rows[0].epoch, rows[0].status)


def _check_owner(ctx: WorkflowContext, epoch: int, status: str) -> None:
    if status == Status.CANCELLED:
        raise WorkflowCancelled(ctx.workflow_id)
    if epoch != ctx.epoch or status != Status.PENDING:
        raise LostOwnership(
            f"workflow {ctx.workflow_id!r} is now owned by another executor (epoch {epoch}, "
            f"this run holds {ctx.epoch}); its transaction was rolled back"
        )


def run_alone(
    engine: Host, spec: TransactionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Protocol[Any]:
    """A transaction function called outside any workflow: once, in its own transaction
    (run again only after a conflict), with nothing recorded."""
    conflicts = 0
    while True:
        try:
            done = yield Transact(
                spec.name,
                spec.fn,
                args,
                kwargs,
                spec.isolation,
                spec.database,
                _no_checkpoint,
                spec.pipeline,
            )
        except TransactionConflict:
            conflicts += 1
            if (yield from _again_after_conflict(spec, conflicts)):
                continue
            raise
        return done.value


def _no_checkpoint(_value: Any) -> None:
    return None


def _again_after_conflict(spec: TransactionSpec, conflicts: int) -> Protocol[bool]:
    """After the ``conflicts``-th conflict in a row: True, once its back-off has passed,
    while ``conflict_retries`` allows another run."""
    if conflicts > spec.conflict_retries:
        return False
    yield Sleep(spec.conflict_delay(conflicts))
    return True
