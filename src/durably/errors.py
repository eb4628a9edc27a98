"""Every error durably raises, under one root: ``DurablyError``."""

from __future__ import annotations

from typing import Any

#: The page that explains every error, one section each (its anchor: the class name in
#: lower case); every message ends with a pointer to its section.
ERRORS_PAGE = "docs/errors.md"


class DurablyError(Exception):
    """Root of every error raised by durably itself. Its message says what was wrong and
    what to do, and ends with where the docs explain it: ``[docs/errors.md#name]``."""

    _message: str | None = None

    def _set(self, message: str, *args: Any) -> None:
        # ``args`` keep the constructor's arguments so a recorded error is rebuilt
        # exactly on replay; the message is what a person reads.
        self._message = message
        self.args = args

    def __str__(self) -> str:
        text = self._message if self._message is not None else super().__str__()
        return text if self.docs is None else f"{text} [{self.docs}]"

    @property
    def docs(self) -> str | None:
        """Where this error is explained: its section of the errors page."""
        # A subclass made elsewhere points to the section of the class it extends.
        documented = next(c for c in type(self).__mro__ if c.__module__ == __name__)
        return f"{ERRORS_PAGE}#{documented.__name__.lower()}"


class ConfigurationError(DurablyError):
    """The app, a decorator or a call was configured with invalid options."""


class ExecutorIdInUse(ConfigurationError):
    """Another live process holds this executor ID: its heartbeat is within its lease."""

    def __init__(
        self,
        executor_id: str,
        hostname: str | None,
        pid: int | None,
        heartbeat_age: float | None,
        expires_in: float | None,
    ) -> None:
        holder = f"host {hostname!r}, pid {pid}" if hostname is not None else "details unknown"
        beat = f", last heartbeat {heartbeat_age:.1f} s ago" if heartbeat_age is not None else ""
        wait = (
            f" If that process has died, its lease runs out in {max(0.0, expires_in):.0f} s: "
            f"start this one again after that."
            if expires_in is not None
            else ""
        )
        self._set(
            f"executor ID {executor_id!r} is held by another live process ({holder}{beat}); "
            f"two processes must never share an executor ID, or both would run the same "
            f"workflows. Give each process its own executor_id (a stable one per machine or "
            f"pod), or leave executor_id unset to let durably generate one.{wait}",
            executor_id,
            hostname,
            pid,
            heartbeat_age,
            expires_in,
        )
        self.executor_id = executor_id
        self.hostname = hostname
        self.pid = pid
        self.heartbeat_age = heartbeat_age
        self.expires_in = expires_in


class InvalidArgument(DurablyError, ValueError):
    """An argument of a durably call is out of range or of the wrong type."""


class UnusableConnection(InvalidArgument):
    """A connection given to ``enqueue_in``/``send_in`` cannot carry durably's writes in
    the caller's transaction (closed, no transaction open, another database, ...);
    refused before anything runs on it."""


class DatabaseUnavailable(DurablyError):
    """The database (embedded or remote) could not be reached or started."""


class ConnectionLost(DatabaseUnavailable):
    """The connection broke during a statement: whether it committed is unknown.

    durably settles it itself (each write is retried in a form that finds its own earlier
    effect); it reaches user code only when the database stays away past the retries.
    """


class ValueEncodingError(DurablyError, TypeError):
    """A value cannot be stored: raised before anything is written."""


class ValueTooLarge(ValueEncodingError):
    """A value's stored form is larger than durably stores (``durably.codec.MAX_VALUE_BYTES``):
    raised before anything is written."""

    def __init__(self, where: str, size: int, limit: int) -> None:
        self._set(
            f"cannot store the value at {where}: its stored form is {size / 2**20:.1f} MiB, "
            f"more than the {limit / 2**20:g} MiB durably stores per value "
            f"(durably.codec.MAX_VALUE_BYTES); keep large data elsewhere (a file, an object "
            f"store) and pass a reference to it",
            where,
            size,
            limit,
        )
        self.where = where
        self.size = size
        self.limit = limit


class DatabaseLimitExceeded(InvalidArgument):
    """PostgreSQL refused a statement as beyond one of its limits (SQLSTATE class 54, such
    as an index row too large): bad input, rolled back, and never retried as an outage."""


class ValueDecodingError(DurablyError):
    """A stored value cannot be turned back into the type its hints ask for."""


class WorkflowNotFound(DurablyError, LookupError):
    """No workflow with the given ID exists."""

    def __init__(self, workflow_id: str) -> None:
        self._set(f"no workflow with id {workflow_id!r} exists", workflow_id)
        self.workflow_id = workflow_id


class DuplicateWorkflow(DurablyError):
    """A queue already holds an active workflow with the same deduplication key."""

    def __init__(self, queue: str, dedup_key: str, holder: str) -> None:
        self._set(
            f"queue {queue!r} already has an active workflow with dedup_key {dedup_key!r} "
            f"(workflow {holder!r}); wait for it to finish, or pass "
            f"if_duplicate='existing' to get its handle",
            queue,
            dedup_key,
            holder,
        )
        self.queue = queue
        self.dedup_key = dedup_key
        self.holder = holder


class ScheduleNotFound(DurablyError, LookupError):
    """No schedule with the given name exists."""

    def __init__(self, name: str) -> None:
        self._set(f"no schedule named {name!r} exists", name)
        self.name = name


class WorkflowConflict(DurablyError):
    """A workflow ID is already used by a different workflow function."""

    def __init__(self, workflow_id: str, existing: str, requested: str) -> None:
        self._set(
            f"workflow id {workflow_id!r} already belongs to workflow {existing!r}; "
            f"it cannot be started as {requested!r} (choose another id)",
            workflow_id,
            existing,
            requested,
        )
        self.workflow_id = workflow_id
        self.existing = existing
        self.requested = requested


class UnknownWorkflow(DurablyError):
    """A stored workflow names a function this process has not registered."""


class NonDeterminismError(DurablyError):
    """Replay reached a recorded position with a different operation."""

    def __init__(self, workflow_id: str, position: int, recorded: str, called: str) -> None:
        self._set(
            f"workflow {workflow_id!r} is not deterministic: step {position} was recorded as "
            f"{recorded!r} but replay called {called!r}; workflow code must call the same "
            f"steps in the same order on every run (if only the name changed, pass the "
            f"recorded one as name=... to keep workflows in flight replaying)",
            workflow_id,
            position,
            recorded,
            called,
        )
        self.workflow_id = workflow_id
        self.position = position
        self.recorded = recorded
        self.called = called


class NotInWorkflow(DurablyError):
    """A durable operation that needs a workflow was called outside one."""


class WorkflowCancelled(DurablyError):
    """The workflow was cancelled (by a user or by its timeout)."""

    def __init__(self, workflow_id: str) -> None:
        self._set(f"workflow {workflow_id!r} was cancelled", workflow_id)
        self.workflow_id = workflow_id


class WorkflowDeadLettered(DurablyError):
    """The workflow crashed its worker too often and was set aside."""

    def __init__(self, workflow_id: str, attempts: int) -> None:
        self._set(
            f"workflow {workflow_id!r} was dead-lettered after {attempts} recovery attempts; "
            f"fix the cause, then app.resume({workflow_id!r})",
            workflow_id,
            attempts,
        )
        self.workflow_id = workflow_id
        self.attempts = attempts


class Timeout(DurablyError, TimeoutError):
    """A wait of durably's took longer than the timeout given (the base of
    ``ResultTimeout`` and ``StreamTimeout``; also a built-in ``TimeoutError``)."""


class ResultTimeout(Timeout):
    """Waiting for a workflow's result took longer than the timeout given."""


class StreamTimeout(Timeout):
    """No new value came on a stream within the reader's timeout; the stream is still
    open (its workflow has not finished): read again from ``offset`` to go on."""

    def __init__(self, workflow_id: str, key: str, timeout: float, offset: int) -> None:
        self._set(
            f"no new value on stream {key!r} of workflow {workflow_id!r} within {timeout} s; "
            f"the stream is still open: read_stream(..., offset={offset}) goes on from here",
            workflow_id,
            key,
            timeout,
            offset,
        )
        self.workflow_id = workflow_id
        self.key = key
        self.timeout = timeout
        self.offset = offset


class StepRetriesExceeded(DurablyError):
    """A step failed on every attempt; ``errors`` holds each attempt's exception."""

    def __init__(self, step_name: str, errors: list[BaseException] | list[str]) -> None:
        # On replay the attempts come back as their recorded descriptions.
        rebuilt = [e if isinstance(e, BaseException) else RecordedError("", e) for e in errors]
        described = [e if isinstance(e, str) else f"{type(e).__name__}: {e}" for e in errors]
        detail = "; ".join(f"#{i + 1} {d}" for i, d in enumerate(described))
        self._set(
            f"step {step_name!r} failed after {len(errors)} attempts: {detail}",
            step_name,
            described,
        )
        self.step_name = step_name
        self.errors: list[BaseException] = rebuilt


class RecordedError(DurablyError):
    """A recorded error whose original type could not be rebuilt on replay."""

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        self._set(
            f"{type_name}: {message}" if type_name else message, type_name, message, traceback
        )
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    @property
    def docs(self) -> None:
        """None: the message is the recorded error's own, shown as it was."""
        return None


class LostOwnership(DurablyError):
    """This process no longer owns the workflow: another executor took it over."""


class TransactionConflict(DurablyError):
    """A transaction function met a serialization failure or a deadlock and was rolled
    back. durably runs it again in a fresh transaction (with back-off); it becomes the
    step's error only after ``conflict_retries`` attempts all conflicted."""


class TransactionMisuse(DurablyError):
    """A transaction function committed, rolled back or closed its connection itself, or
    returned from an aborted transaction: durably commits it with the checkpoint, so the
    function must leave its transaction open (raise to roll back)."""


class MissingDependency(ConfigurationError, ImportError):
    """An optional part of durably was used without the extra that installs it."""


class UndecodableMessage(DurablyError):
    """A consumed message's value could not be decoded (or stored): it was dead-lettered."""

    def __init__(self, topic: str, partition: int, offset: int, error: str) -> None:
        self._set(
            f"Kafka message {topic}[{partition}]@{offset} could not be decoded and was "
            f"dead-lettered ({error}); its raw key, value and headers are this workflow's "
            f"input: fix the decoder, then run the workflow on it again",
            topic,
            partition,
            offset,
            error,
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.error = error


class PublishFailed(DurablyError):
    """A message published from a step was not acknowledged by the Kafka broker."""
