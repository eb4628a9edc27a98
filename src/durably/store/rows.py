"""The rows the store hands back, by name: one type per shape of result.

Rows are built from the columns' names (``psycopg.rows.kwargs_row``), so a column that
is added, renamed or reordered in a ``.sql`` file without its row type fails loudly here,
at the store, instead of silently shifting what every reader unpacks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple


class Created(NamedTuple):
    """A workflow this start created (and now owns), with its deadline."""

    epoch: int
    deadline: datetime | None


class ChildStarted(NamedTuple):
    """A child start: whether the parent is still ours, the child's epoch when this
    start created it, whether the parent's operation was recorded."""

    owned: int
    child_epoch: int | None
    recorded: int
    child_deadline: datetime | None


class Inspected(NamedTuple):
    """Who owns a workflow now, and what (if anything) is recorded at one step."""

    epoch: int
    status: str
    name: str | None
    kind: str | None
    output: Any
    error: Any
    child_id: str | None


class StoredOperation(NamedTuple):
    """One recorded operation, for replay."""

    workflow_id: str
    step: int
    name: str
    kind: str
    output: Any
    error: Any
    child_id: str | None


class Outcome(NamedTuple):
    """A workflow's name, status and outcome."""

    name: str
    status: str
    output: Any
    error: Any
    recovery_attempts: int


class Claimed(NamedTuple):
    """A workflow a claim (start from a queue, wake-up, takeover, recovery) gave us."""

    id: str
    name: str
    status: str
    inputs: Any
    epoch: int
    codec: str
    recovery_attempts: int
    deadline: datetime | None
    queue_name: str | None
    notified: Any


class Finished(NamedTuple):
    """Whether an outcome was recorded (1) or fenced out (0)."""

    finished: int
    notified: int


class Consumed(NamedTuple):
    """A recv's attempt: the message it took (or the operation already at its step)."""

    owned: int
    recorded: int
    output: Any
    earlier_name: str | None
    earlier_kind: str | None


class Delivered(NamedTuple):
    """A message sent from outside any workflow."""

    found: int
    inserted: int
    notified: int
    woken: int


class SentFromWorkflow(NamedTuple):
    """A message sent by a workflow, recorded as its operation."""

    owned: int
    found: int
    recorded: int
    notified: int
    woken: int


class EventSet(NamedTuple):
    """An event set (and recorded as an operation when from a workflow)."""

    owned: int
    recorded: int
    notified: int
    woken: int


class StreamWritten(NamedTuple):
    """A stream entry written (and recorded as an operation)."""

    owned: int
    recorded: int
    notified: int


class Survey(NamedTuple):
    """A heartbeat's answer: what is due for this executor, as the database sees it."""

    next_wake: datetime | None
    next_deadline: datetime | None
    next_tick: datetime | None
    ready_queues: list[str]
    expired: bool
    now: datetime
