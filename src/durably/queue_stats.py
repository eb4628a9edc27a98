"""Queue statistics: how much work waits and runs on each queue, and how fast it starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from durably.errors import InvalidArgument
from durably.execution.effects import Protocol, Read
from durably.store.rows import QueueFigures

if TYPE_CHECKING:
    from durably.runtime.engine import Engine

# The longest history of starts a call may ask for (a day, minute by minute).
MAX_MINUTES = 1440


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue now: waiting and running work, and starts minute by minute.

    ``depth`` counts ENQUEUED work (ready to run), ``delayed`` DELAYED work (not yet due),
    ``running`` PENDING work claimed from the queue (also when parked in a wait).
    ``started_per_minute`` holds the starts of each of the last minutes, oldest first;
    its last entry is ``started_last_minute``. ``oldest_wait`` is how long the oldest
    ENQUEUED workflow has waited (None when none waits). ``concurrency`` is the declared
    global limit (None when unlimited or not declared); ``workers`` the live executors
    that listen to the queue.
    """

    queue: str
    depth: int
    delayed: int
    running: int
    started_last_minute: int
    started_per_minute: tuple[int, ...]
    oldest_enqueued_at: datetime | None
    oldest_wait: timedelta | None
    concurrency: int | None
    workers: int
    measured_at: datetime


def check_minutes(minutes: object) -> int:
    """The history length asked for, or InvalidArgument naming the bad value."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise InvalidArgument(
            f"minutes must be a whole number from 1 to {MAX_MINUTES}, got {minutes!r}"
        )
    return minutes


def read_queue_stats(engine: Engine, minutes: int) -> Protocol[list[QueueStats]]:
    """Read every queue's figures in one query."""
    rows = yield Read(engine.queue_statements.queue_stats(minutes))
    return [_stats(row) for row in rows]


def _stats(row: QueueFigures) -> QueueStats:
    per_minute = tuple(int(n) for n in row.started_per_minute)
    oldest = row.oldest_enqueued_at
    return QueueStats(
        queue=row.queue,
        depth=row.depth,
        delayed=row.delayed,
        running=row.running,
        started_last_minute=per_minute[-1] if per_minute else 0,
        started_per_minute=per_minute,
        oldest_enqueued_at=oldest,
        oldest_wait=max(row.measured_at - oldest, timedelta(0)) if oldest is not None else None,
        concurrency=row.concurrency,
        workers=row.workers,
        measured_at=row.measured_at,
    )
