"""Per-call options of a workflow start, validated before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from durably import names
from durably.errors import InvalidArgument

MAX_ID_LENGTH = names.MAX_NAME_CHARS
MAX_PRIORITY = 2**31 - 1
IfDuplicate = Literal["raise", "existing"]


@dataclass(frozen=True, slots=True)
class WorkflowOptions:
    """Options set with ``wf.options(...)`` for the next start."""

    id: str | None = None
    timeout: float | None = None
    queue: str | None = None
    priority: int | None = None
    dedup_key: str | None = None
    partition_key: str | None = None
    delay: float | timedelta | datetime | None = None
    if_duplicate: IfDuplicate = "raise"

    def validate(self) -> None:
        if self.id is not None:
            check_workflow_id(self.id)
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not 0 < self.timeout <= 100 * 365 * 86400
        ):
            raise InvalidArgument(
                f"timeout must be a positive number of seconds (at most about 100 years), "
                f"got {self.timeout!r}"
            )
        queued = (self.priority, self.dedup_key, self.partition_key, self.delay)
        if self.queue is None and any(v is not None for v in queued):
            raise InvalidArgument(
                "priority, dedup_key, partition_key and delay apply to queued work: "
                "give queue=... too"
            )
        if self.queue is not None:
            check_name(self.queue, "queue")
        if self.priority is not None:
            check_priority(self.priority)
        for label, key in (("dedup_key", self.dedup_key), ("partition_key", self.partition_key)):
            if key is not None:
                check_name(key, label)
        if self.delay is not None:
            delay_until(self.delay)
        if self.if_duplicate not in ("raise", "existing"):
            raise InvalidArgument(
                f"if_duplicate must be 'raise' or 'existing', got {self.if_duplicate!r}"
            )


def check_workflow_id(workflow_id: object) -> str:
    """A workflow ID: a name as ``durably.names`` allows (1 to 512 characters, no NUL)."""
    return names.check_name(workflow_id, "workflow id")


def check_name(value: object, what: str) -> str:
    """Queue names and keys: names as ``durably.names`` allows."""
    return names.check_name(value, what)


def check_priority(priority: object) -> int:
    """Priorities are integers 1..2**31-1; lower runs first."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(f"priority must be an integer, got {type(priority).__name__}")
    if not 1 <= priority <= MAX_PRIORITY:
        raise InvalidArgument(
            f"priority must be between 1 and {MAX_PRIORITY} (lower runs first), got {priority}"
        )
    return priority


def delay_until(delay: object) -> datetime:
    """A delay from now (seconds, or a ``timedelta``), or an absolute time
    (timezone-aware)."""
    if isinstance(delay, timedelta):
        if delay < timedelta(0):
            raise InvalidArgument(f"delay must not be negative, got {delay!r}")
        delay = delay.total_seconds()
    if isinstance(delay, datetime):
        if delay.tzinfo is None:
            raise InvalidArgument(
                "delay as a datetime must be timezone-aware (e.g. datetime.now(UTC) + ...)"
            )
        return delay
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not delay >= 0:
        raise InvalidArgument(
            f"delay must be a number of seconds >= 0, a timedelta or an aware datetime, "
            f"got {delay!r}"
        )
    return now() + timedelta(seconds=check_seconds(delay, "delay"))


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


# The longest wait accepted (about 100 years): datetimes must stay representable.
MAX_SECONDS = 100 * 365 * 86400.0


def check_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidArgument(f"{what} must be a number of seconds >= 0, got {value!r}")
    if not value <= MAX_SECONDS:  # also refuses infinity
        raise InvalidArgument(
            f"{what} must be at most {MAX_SECONDS:.0f} seconds (about 100 years), got {value!r}"
        )
    return float(value)
