"""What listings return: one record per workflow or recorded operation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

from durably import codec as codec_module
from durably.errors import InvalidArgument
from durably.execution.observe import INPUTS_KEY
from durably.execution.specs import WorkflowSpec
from durably.execution.versions import check_version
from durably.keywords import WorkflowFilters
from durably.names import check_name
from durably.status import Status
from durably.store.rows import StoredOperation, StoredWorkflow
from durably.store.statements import Statement, Statements


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A workflow as stored: identity, status, inputs, outcome and times, and whether a
    live worker serves it."""

    id: str
    """The workflow ID."""
    name: str
    """The name its workflow function is registered under."""
    status: Status
    """Where it stands now (a ``Status``, which compares equal to its name)."""
    inputs: Any
    """Its arguments as stored: ``{"args": [...], "kwargs": {...}}``."""
    output: Any
    """Its result, once it is SUCCESS; else None."""
    error: BaseException | None
    """Its recorded error, once it is ERROR; else None."""
    executor_id: str | None
    """The executor that owns it, or that finished it; None while no executor holds it
    (queued, parked, cancelled)."""
    recovery_attempts: int
    """Recoveries since it last recorded a step (docs/concepts/leases-and-fencing.md)."""
    parent_id: str | None
    """The workflow that started it, for a child; else None."""
    forked_from: str | None
    """The workflow it was forked from (``app.fork``); else None."""
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    """When it finished; None while unfinished."""
    served: bool | None = None
    """Whether a live worker (heartbeat within its lease) registers this workflow's name
    and, for queued work, listens to its queue; None when not known. Unfinished work
    that is not served waits until such a worker runs. A workflow with an app_version is
    served only by a worker that recovers that version (its own, or one of its
    recover_versions; docs/upgrades.md)."""
    queue: str | None = None
    """The queue it was enqueued on; None when it was started directly."""
    app_version: str | None = None
    """The application version that started it (docs/upgrades.md); None while queued and
    not started yet (any version may start it), or when started before versions existed."""


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One recorded operation of a workflow."""

    step: int
    """Its step number in the workflow, from 1, in call order."""
    name: str
    """The step's, transaction's or child's name; for a wait or a message, what it is on
    (``recv:TOPIC``, ``send:TARGET``, the event or stream key, the patch name)."""
    kind: str
    """``step``, ``transaction``, ``child`` (called, started or enqueued), ``sleep``,
    ``recv``, ``send``, ``set_event``, ``get_event``, ``write_stream``, ``close_stream``,
    ``wait_first`` (its output names the first to finish) or ``patch``."""
    output: Any
    """What it returned (replayed ever after); None after an error."""
    error: BaseException | None
    """The error it ended with (raised again on replay); else None."""
    child_id: str | None
    """The child workflow's ID, for kind ``child``; else None."""
    started_at: datetime
    completed_at: datetime
    attempts: int = 1
    """Runs of a step's or transaction's body before this outcome (its retries + 1)."""


def error_fields(error: BaseException | None) -> dict[str, str] | None:
    """A recorded error as its type, message and traceback (as the worker stored them;
    the traceback is empty when none was recorded), for output read by people or tools."""
    if error is None:
        return None
    type_name = getattr(error, "type_name", None) or type(error).__qualname__
    message = getattr(error, "message", None)
    if not isinstance(message, str):
        message = str(error)
    trace = getattr(error, "__durably_traceback__", "") or ""
    return {"type": str(type_name), "message": message, "traceback": str(trace)}


def list_query(statements: Statements, **filters: Unpack[WorkflowFilters]) -> Statement:
    """Validate listing filters and build the statement; bad filters name the problem."""
    status, name, ids = filters.get("status"), filters.get("name"), filters.get("ids")
    created_after, created_before = filters.get("created_after"), filters.get("created_before")
    limit, offset = filters.get("limit"), filters.get("offset", 0)
    descending = bool(filters.get("descending", False))
    statuses: list[str] | None = None
    if status is not None:
        raw = [status] if isinstance(status, str) else list(status)
        statuses = []
        for value in raw:
            try:
                statuses.append(Status(value).value)
            except ValueError:
                valid = ", ".join(s.value for s in Status)
                raise InvalidArgument(f"unknown status {value!r}; use one of {valid}") from None
    if name is not None:
        check_name(name, "name")
    if ids is not None and (isinstance(ids, str) or not all(isinstance(i, str) for i in ids)):
        raise InvalidArgument("ids must be a list of workflow id strings")
    for one in ids or ():
        check_name(one, "workflow id")
    bounds: dict[str, object] = {"created_after": created_after, "created_before": created_before}
    for label, bound in bounds.items():
        if bound is not None and not isinstance(bound, datetime):
            raise InvalidArgument(f"{label} must be a datetime, got {type(bound).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"limit must be a whole number >= 0 or None, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidArgument(f"offset must be a whole number >= 0, got {offset!r}")
    queue, after = filters.get("queue"), filters.get("after")
    if queue is not None:
        check_name(queue, "queue")
    if after is not None and not (
        isinstance(after, tuple)
        and len(after) == 2
        and isinstance(after[0], datetime)
        and isinstance(after[1], str)
    ):
        raise InvalidArgument(
            f"after must be a (created_at, id) pair of a datetime and a string, got {after!r}"
        )
    app_version = filters.get("app_version")
    if app_version is not None:
        app_version = check_version(app_version)
    return statements.list_workflows(
        status=statuses,
        name=name,
        ids=ids,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        offset=offset,
        descending=descending,
        queue=queue,
        after=after,
        app_version=app_version,
    )


def _decode(codec: codec_module.Codec, data: Any, hint: Any) -> Any:
    if data is None:
        return None
    try:
        return codec.load(data, hint)
    except Exception:
        return data  # a listing shows what is stored even if the type can't be rebuilt


def _without_telemetry(inputs: Any) -> Any:
    """The stored inputs as the caller gave them: the trace context that telemetry keeps
    beside the arguments (``execution.observe``) is not shown."""
    if isinstance(inputs, dict) and INPUTS_KEY in inputs:
        return {key: value for key, value in inputs.items() if key != INPUTS_KEY}
    return inputs


def workflow_info(
    row: StoredWorkflow, codec: codec_module.Codec, registry: dict[str, WorkflowSpec]
) -> WorkflowInfo:
    spec = registry.get(row.name)
    return WorkflowInfo(
        id=row.id,
        name=row.name,
        status=Status(row.status),
        inputs=_without_telemetry(row.inputs),
        output=_decode(codec, row.output, spec.return_hint if spec else None),
        error=codec_module.load_error(row.error) if row.error is not None else None,
        executor_id=row.executor_id,
        recovery_attempts=row.recovery_attempts,
        parent_id=row.parent_id,
        forked_from=row.forked_from,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        served=row.served,
        queue=row.queue_name,
        app_version=row.app_version,
    )


def step_info(row: StoredOperation, codec: codec_module.Codec) -> StepInfo:
    return StepInfo(
        step=row.step,
        name=row.name,
        kind=row.kind,
        output=_decode(codec, row.output, None),
        error=codec_module.load_error(row.error) if row.error is not None else None,
        child_id=row.child_id,
        started_at=row.started_at,
        completed_at=row.completed_at,
        attempts=row.attempts or 1,
    )
