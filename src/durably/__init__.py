"""durably: durable Python workflows checkpointed in PostgreSQL.

Decorate a function as a workflow and the functions it calls as steps; every finished
step is recorded in Postgres, and if the process dies, a live worker resumes the
workflow from its last completed step.
"""

from durably.app import App
from durably.client import Client
from durably.codec import Codec, JsonCodec, PickleCodec
from durably.errors import (
    ConfigurationError,
    ConnectionLost,
    DatabaseLimitExceeded,
    DatabaseUnavailable,
    DuplicateWorkflow,
    DurablyError,
    ExecutorIdInUse,
    InvalidArgument,
    LostOwnership,
    MissingDependency,
    NonDeterminismError,
    NotInWorkflow,
    PublishFailed,
    RecordedError,
    ResultTimeout,
    ScheduleNotFound,
    StepRetriesExceeded,
    StreamTimeout,
    Timeout,
    TransactionConflict,
    TransactionMisuse,
    UndecodableMessage,
    UnknownWorkflow,
    UnusableConnection,
    ValueDecodingError,
    ValueEncodingError,
    ValueTooLarge,
    WorkflowCancelled,
    WorkflowConflict,
    WorkflowDeadLettered,
    WorkflowNotFound,
)
from durably.info import StepInfo, WorkflowInfo
from durably.operations import (
    close_stream,
    close_stream_async,
    deprecate_patch,
    deprecate_patch_async,
    patched,
    patched_async,
    recv,
    recv_async,
    set_event,
    set_event_async,
    sleep,
    sleep_async,
    step_key,
    workflow_id,
    write_stream,
    write_stream_async,
)
from durably.queue_stats import QueueStats
from durably.queues import Queue
from durably.scheduling import ScheduleInfo
from durably.status import Status
from durably.telemetry.logs import log_context
from durably.transaction import Transaction
from durably.workflow import Step, Workflow, WorkflowHandle

__all__ = [
    "App",
    "Client",
    "Codec",
    "ConfigurationError",
    "ConnectionLost",
    "DatabaseLimitExceeded",
    "DatabaseUnavailable",
    "DuplicateWorkflow",
    "DurablyError",
    "ExecutorIdInUse",
    "InvalidArgument",
    "JsonCodec",
    "LostOwnership",
    "MissingDependency",
    "NonDeterminismError",
    "NotInWorkflow",
    "PickleCodec",
    "PublishFailed",
    "Queue",
    "QueueStats",
    "RecordedError",
    "ResultTimeout",
    "ScheduleInfo",
    "ScheduleNotFound",
    "Status",
    "Step",
    "StepInfo",
    "StepRetriesExceeded",
    "StreamTimeout",
    "Timeout",
    "Transaction",
    "TransactionConflict",
    "TransactionMisuse",
    "UndecodableMessage",
    "UnknownWorkflow",
    "UnusableConnection",
    "ValueDecodingError",
    "ValueEncodingError",
    "ValueTooLarge",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowConflict",
    "WorkflowDeadLettered",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFound",
    "close_stream",
    "close_stream_async",
    "deprecate_patch",
    "deprecate_patch_async",
    "log_context",
    "patched",
    "patched_async",
    "recv",
    "recv_async",
    "set_event",
    "set_event_async",
    "sleep",
    "sleep_async",
    "step_key",
    "workflow_id",
    "write_stream",
    "write_stream_async",
]

__version__ = "0.1.0"
