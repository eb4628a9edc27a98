"""The rows the store hands back, by name: one type per shape of result.

Rows are built from the columns' names (``psycopg.rows.kwargs_row``), so a column that
is added, renamed or reordered in a ``.sql`` file without its row type fails loudly here,
at the store, instead of silently shifting what every reader unpacks. ``ROW_TYPES`` says
which statement returns which type; a statement without one returns its rowcount.
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


class Deleted(NamedTuple):
    """How many rows a retention statement deleted."""

    deleted: int


class Chore(NamedTuple):
    """A periodic chore whose turn this caller took."""

    name: str


class Written(NamedTuple):
    """A transaction's checkpoint was written (it fails instead of writing none)."""

    written: int


class TransactionOutput(NamedTuple):
    """What a transaction step on another database committed: its output, parsed and as
    stored (for the operation row that records it in the app's database)."""

    output: Any
    text: str | None


class StoredOperation(NamedTuple):
    """One recorded operation, for replay and listings."""

    workflow_id: str
    step: int
    name: str
    kind: str
    output: Any
    error: Any
    child_id: str | None
    started_at: datetime
    completed_at: datetime
    attempts: int | None  # runs of a step's body before its outcome (None: one)


class Outcome(NamedTuple):
    """A workflow's name, status and outcome."""

    name: str
    status: str
    output: Any
    error: Any
    recovery_attempts: int
    epoch: int  # of its current run; a resume retried after a lost reply compares it


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


class BatchCreated(NamedTuple):
    """A workflow a batch of starts created (``insert_workflows``)."""

    id: str
    epoch: int
    deadline: datetime | None


class BatchRecorded(NamedTuple):
    """An operation a batch of checkpoints wrote (``record_operations``)."""

    workflow_id: str
    step: int


class BatchFinished(NamedTuple):
    """A workflow a batch of outcomes finished (``finish_workflows``)."""

    id: str
    notified: int


class Timeline(NamedTuple):
    """The database's time, and the WAL timeline its server writes on (None: unknown)."""

    now: datetime
    timeline: int | None
    epoch_floor: int | None  # the timeline's lowest epoch: every run below it is fenced


class StoredWorkflow(NamedTuple):
    """A workflow row, for listings."""

    id: str
    name: str
    status: str
    inputs: Any
    output: Any
    error: Any
    executor_id: str | None
    epoch: int
    recovery_attempts: int
    max_recovery_attempts: int
    parent_id: str | None
    parent_step: int | None
    forked_from: str | None
    codec: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    served: bool
    queue_name: str | None
    # The application version that started it (None: not started yet, or before 0012).
    app_version: str | None = None


class QueueFigures(NamedTuple):
    """One queue as ``queue_stats`` sees it now."""

    queue: str
    depth: int
    delayed: int
    oldest_enqueued_at: datetime | None
    running: int
    started_per_minute: list[int]
    concurrency: int | None
    workers: int
    measured_at: datetime


class AppliedMigration(NamedTuple):
    """A migration this schema has."""

    version: int


class WaitDeadline(NamedTuple):
    """The durable deadline of a wait."""

    wait_deadline: datetime


class Locked(NamedTuple):
    """A workflow row locked for the rest of the transaction."""

    id: str


class EventsLocked(NamedTuple):
    """The events of a workflow locked for the rest of the transaction."""

    locked: bool


class Parking(NamedTuple):
    """Whether a waiting workflow was released (False: what it waits for has come)."""

    parked: bool


class EventValue(NamedTuple):
    """The latest value of an event."""

    value: Any


class EventEntry(NamedTuple):
    """An event's key and latest value."""

    key: str
    value: Any


class StreamEntry(NamedTuple):
    """One entry of a stream (the closing one has ``closed``)."""

    step: int
    value: Any
    closed: bool


class Cancelled(NamedTuple):
    """Whether the workflow to cancel exists, and how many workflows were cancelled."""

    found: int
    cancelled: int


class ExpiredCancelled(NamedTuple):
    """How many workflows past their deadline were cancelled."""

    cancelled: int


class Resumed(NamedTuple):
    """A workflow made due again."""

    id: str
    notified: Any


class Forked(NamedTuple):
    """A fork: whether its source exists, whether the copy was made, what was copied."""

    found: int
    created: int
    operations: int
    events: int
    streams: int
    notified: int


class StoredQueue(NamedTuple):
    """A declared queue."""

    name: str
    priority: bool


class Enqueued(NamedTuple):
    """A workflow put on its queue (declared by some worker already, or not yet)."""

    id: str
    status: str
    notified: Any
    queue_declared: bool


class DedupHolder(NamedTuple):
    """The waiting or running workflow that holds a deduplication key."""

    id: str


class QueueLocked(NamedTuple):
    """A queue row locked for the rest of the transaction."""

    name: str


class DelaySet(NamedTuple):
    """A waiting workflow whose start moved."""

    status: str
    notified: Any
    queue_name: str


class Debounced(NamedTuple):
    """The one waiting run of a debounce key."""

    id: str
    available_at: datetime
    notified: Any


class RateWindow(NamedTuple):
    """When a rate-limited queue's full window lets the next start in (None: not full)."""

    opens_at: datetime | None


class Schedule(NamedTuple):
    """A schedule's definition and state, with its revision (what conditional changes of
    it compare)."""

    name: str
    workflow_name: str
    cron: str
    timezone: str
    paused: bool
    catch_up: bool
    last_tick: datetime | None
    next_tick: datetime | None
    revision: int


class ScheduleDeleted(NamedTuple):
    """A deleted schedule."""

    name: str


class HandedOver(NamedTuple):
    """A tick started for any worker: whether this call created its workflow, and the
    name of the workflow holding its ID."""

    id: str
    created: bool
    name: str
    notified: int


class DueSchedule(NamedTuple):
    """An active schedule, due or next to come, with the database's clock."""

    name: str
    workflow_name: str
    cron: str
    timezone: str
    catch_up: bool
    last_tick: datetime | None
    next_tick: datetime
    revision: int
    now: datetime


class Released(NamedTuple):
    """An executor's lease ended at shutdown: how many workflows it left unfinished."""

    unfinished: int


class Survey(NamedTuple):
    """A heartbeat's answer: whether the executor ID is this engine's (else who holds
    it), and what is due for this executor, as the database sees it."""

    registered: bool
    holder_host: str | None
    holder_pid: int | None
    holder_pid_space: str | None
    holder_incarnation: str | None
    holder_age: float | None
    holder_expires_in: float | None
    next_wake: datetime | None
    next_deadline: datetime | None
    next_tick: datetime | None
    ready_queues: list[str]
    expired: bool
    now: datetime
    timeline: int | None  # the server's WAL timeline (a failover moves it on)


class Stranger(NamedTuple):
    """A name of waiting work no live executor serves (``strangers``)."""

    name: str


class Served(NamedTuple):
    """Whether a live executor serves a workflow name (on a queue)."""

    served: bool


class QueueGauge(NamedTuple):
    """One queue as a metrics scrape sees it: waiting, oldest waiting age, running."""

    queue: str
    waiting: int
    oldest_seconds: float
    running: int


class Setting(NamedTuple):
    """A server setting as pg_settings gives it (the value in its base unit)."""

    name: str
    setting: str
    unit: str | None


class SchemaPresence(NamedTuple):
    """Whether a schema exists and has its record of migrations."""

    schema_exists: bool
    migrated: bool


class TableHealth(NamedTuple):
    """A table's vacuum state and size."""

    name: str
    live_rows: int
    dead_rows: int
    vacuumed_at: datetime | None
    autovacuum_enabled: bool
    table_bytes: int
    index_bytes: int


class IndexName(NamedTuple):
    """An index of a table."""

    table_name: str
    index_name: str


class LongTransaction(NamedTuple):
    """A session with a transaction open for long."""

    pid: int
    user_name: str | None
    database: str | None
    application_name: str | None
    state: str
    transaction_seconds: float
    query: str


class Connections(NamedTuple):
    """Client connections open now, and how many wait on an I/O worker."""

    connections: int
    aio_waits: int


class ExecutorClock(NamedTuple):
    """A live executor and its clock's offset from the database's."""

    id: str
    hostname: str
    pid: int
    skew_seconds: float | None


class VersionMoved(NamedTuple):
    """A workflow moved to another application version (``set_version``)."""

    id: str


class StrandedVersion(NamedTuple):
    """A version of unfinished work that no live executor recovers."""

    app_version: str
    workflows: int


# The row type of every statement whose result rows are read, by the statement's name
# in the .sql files. tests/test_store_rows.py checks each against the columns its query
# produces, and that no statement producing columns is missing here.
ROW_TYPES: dict[str, type[tuple[Any, ...]]] = {
    # queries.sql
    "insert_workflow": Created,
    "heartbeat": Survey,
    "strangers": Stranger,
    "insert_workflows": BatchCreated,
    "start_child": ChildStarted,
    "record_operations": BatchRecorded,
    "inspect_operation": Inspected,
    "load_operations_many": StoredOperation,
    "get_outcome": Outcome,
    "timeline": Timeline,
    "release_executor": Released,
    "claim_own": Claimed,
    "claim_abandoned": Claimed,
    "claim_failed_over": Claimed,
    "take_over": Claimed,
    "list_workflows": StoredWorkflow,
    "list_workflows_statuses": StoredWorkflow,
    "served": Served,
    "list_operations": StoredOperation,
    "applied_migrations": AppliedMigration,
    "finish_workflow_notify": Finished,
    "finish_workflows": BatchFinished,
    "send_message": Delivered,
    "send_from_workflow": SentFromWorkflow,
    "consume_message": Consumed,
    "wait_deadline": WaitDeadline,
    "lock_workflow": Locked,
    "lock_events": EventsLocked,
    "park": Parking,
    "wake_due": Claimed,
    "set_event": EventSet,
    "get_event": EventValue,
    "get_all_events": EventEntry,
    "write_stream": StreamWritten,
    "read_stream": StreamEntry,
    "cancel": Cancelled,
    "cancel_expired": ExpiredCancelled,
    "resume": Resumed,
    "fork": Forked,
    # queues.sql
    "get_queue": StoredQueue,
    "enqueue": Enqueued,
    "enqueue_many": Enqueued,
    "dedup_holder": DedupHolder,
    "lock_queue": QueueLocked,
    "claim_queued": Claimed,
    "claim_queued_many": Claimed,
    "claim_queued_partitioned": Claimed,
    "set_delay": DelaySet,
    "debounce": Debounced,
    "rate_window_opens": RateWindow,
    # observe.sql
    "queue_stats": QueueFigures,
    # schedules.sql
    "schedule_upsert": Schedule,
    "schedule_get": Schedule,
    "schedule_list": Schedule,
    "schedule_pause": Schedule,
    "schedule_resume": Schedule,
    "schedule_delete": ScheduleDeleted,
    "schedule_due": DueSchedule,
    "schedule_hand_over": HandedOver,
    "record_transaction_operation": Written,
    # retention.sql
    "gc_workflows": Deleted,
    "gc_executors": Deleted,
    "claim_chore": Chore,
    # telemetry.sql
    "queue_gauges": QueueGauge,
    # doctor.sql
    "doctor_settings": Setting,
    "doctor_schema": SchemaPresence,
    "doctor_tables": TableHealth,
    "doctor_indexes": IndexName,
    "doctor_sessions": LongTransaction,
    "doctor_connections": Connections,
    "doctor_executors": ExecutorClock,
    # versions.sql
    "set_version": VersionMoved,
    "stranded_versions": StrandedVersion,
    # app_database.sql
    "record_transaction": Written,
    "transaction_output": TransactionOutput,
}
