"""What the runtime logs about workflows and steps: one line each, with ``extra`` fields."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from durably.errors import LostOwnership, WorkflowCancelled
from durably.execution.protocol import Parked
from durably.status import Status

if TYPE_CHECKING:
    from durably.execution.context import WorkflowContext
    from durably.execution.effects import StepFailed
    from durably.store.rows import Claimed

# A child of "durably": its level can be set apart from the library's other messages.
log = logging.getLogger("durably.workflows")

# An error's message is cut to its first line and this many characters.
MESSAGE_CHARS = 200


def describe(error: BaseException) -> str:
    """``Type: first line of the message``, short enough for one log line."""
    text = str(error).strip().split("\n", 1)[0]
    if len(text) > MESSAGE_CHARS:
        text = text[: MESSAGE_CHARS - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def fields(workflow_id: str, workflow_name: str, **more: Any) -> dict[str, Any]:
    """The ``extra`` of a record about one workflow (``step`` too when about a step)."""
    return {"workflow_id": workflow_id, "workflow_name": workflow_name, **more}


def run_started(ctx: WorkflowContext) -> None:
    """A run of a workflow body begins here: from the start, or replaying a record."""
    if not log.isEnabledFor(logging.INFO):
        return
    if ctx.recorded:
        log.info(
            "workflow %s (%s) resumed, replaying %d recorded operation(s)",
            ctx.workflow_id,
            ctx.name,
            len(ctx.recorded),
            extra=fields(ctx.workflow_id, ctx.name, epoch=ctx.epoch),
        )
    else:
        log.info(
            "workflow %s (%s) started",
            ctx.workflow_id,
            ctx.name,
            extra=fields(ctx.workflow_id, ctx.name, epoch=ctx.epoch),
        )


def run_finished(ctx: WorkflowContext) -> None:
    """A run recorded its workflow's result."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            "workflow %s (%s) finished",
            ctx.workflow_id,
            ctx.name,
            extra=fields(ctx.workflow_id, ctx.name, status="SUCCESS"),
        )


def run_stopped(ctx: WorkflowContext, error: BaseException, shut_down: bool = False) -> None:
    """A run ended by an exception: a recorded failure, a cancellation, a wait in the
    database, another owner, its executor's shutdown (``shut_down``: it outlived the
    grace), or no outcome at all (recovery takes it back)."""
    status: str | None = None
    detailed = True  # the line ends with the error, described
    if ctx.finished:
        level, text, status = logging.INFO, "workflow %s (%s) failed: %s", "ERROR"
    elif isinstance(error, Parked):
        level, text, detailed = logging.DEBUG, "workflow %s (%s) waits in the database", False
    elif ctx.cancelled or isinstance(error, WorkflowCancelled) or _timed_out(ctx, error):
        level, text, status = logging.INFO, "workflow %s (%s) cancelled", "CANCELLED"
        detailed = False
    elif isinstance(error, LostOwnership):
        # Another run owns it now (its new owner logs the takeover), or this executor
        # shuts down (which says what it leaves, once).
        level, text = logging.DEBUG, "workflow %s (%s) stopped here: %s"
    elif shut_down:
        level, text = logging.DEBUG, "workflow %s (%s) stopped here at shutdown (%s)"
    else:
        level = logging.WARNING
        text = "workflow %s (%s) stopped without an outcome (%s); it will be recovered"
    if not log.isEnabledFor(level):
        return
    args: tuple[Any, ...] = (ctx.workflow_id, ctx.name)
    if detailed:
        args += (describe(error),)
    extra = fields(ctx.workflow_id, ctx.name, error_type=type(error).__name__)
    if status is not None:
        extra["status"] = status
    log.log(level, text, *args, extra=extra)


def _timed_out(ctx: WorkflowContext, error: BaseException) -> bool:
    """An async run cancelled by its deadline (recorded as cancelled by its driver)."""
    return (
        isinstance(error, asyncio.CancelledError)
        and ctx.deadline is not None
        and datetime.now(UTC) >= ctx.deadline
    )


def step_failed(report: StepFailed) -> None:
    """An attempt of a step body raised: retried after a delay, or the step's outcome."""
    if not log.isEnabledFor(logging.WARNING):
        return
    if report.retry_in is not None:
        then = f"retrying in {report.retry_in:.3g} s"
    elif report.attempt < report.attempts:
        then = "retry_on declined a retry"
    else:
        then = "no attempts left"
    log.warning(
        "step %s of workflow %s (%s) failed (attempt %d of %d): %s; %s",
        report.step,
        report.workflow_id,
        report.workflow_name,
        report.attempt,
        report.attempts,
        describe(report.error),
        then,
        extra=fields(
            report.workflow_id,
            report.workflow_name,
            step=report.step,
            position=report.position,
            attempt=report.attempt,
            attempts=report.attempts,
            retry_in=report.retry_in,
            error_type=type(report.error).__name__,
        ),
    )


# Why recovery claimed a workflow, and how its log line says so.
RECOVERED = {
    "own": "recovering workflow %s (%s) left unfinished by this executor's last run",
    "takeover": "taking over workflow %s (%s) from an executor whose lease expired",
    "abandoned": "taking back workflow %s (%s), which stopped here without an outcome",
    "failover": "taking back workflow %s (%s) after a failover of the database, to replay it",
}
Recovered = Literal["own", "takeover", "abandoned", "failover"]


def recovered(row: Claimed, why: Recovered) -> None:
    """Recovery claimed a workflow to run here (or put it back on its queue)."""
    if not log.isEnabledFor(logging.INFO):
        return
    text = RECOVERED[why]
    extra = fields(row.id, row.name, recovery_attempt=row.recovery_attempts, recovered=why)
    if row.status == Status.ENQUEUED and row.queue_name is not None:
        text += ": back on its queue %s (recovery attempt %d)"
        log.info(text, row.id, row.name, row.queue_name, row.recovery_attempts, extra=extra)
    else:
        text += " (recovery attempt %d)"
        log.info(text, row.id, row.name, row.recovery_attempts, extra=extra)


def dead_lettered(row: Claimed) -> None:
    """A claimed workflow used up its recovery attempts."""
    log.error(
        "workflow %s (%s) dead-lettered after %d recovery attempts",
        row.id,
        row.name,
        row.recovery_attempts - 1,
        extra=fields(row.id, row.name, status="DEAD_LETTER"),
    )


def unresumable(row: Claimed) -> None:
    """A claimed workflow's inputs cannot be loaded (logged with the traceback)."""
    log.exception(
        "cannot resume workflow %s (%s)", row.id, row.name, extra=fields(row.id, row.name)
    )
