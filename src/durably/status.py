"""Workflow statuses, as stored in the database."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a workflow stands. A string enum: ``Status.SUCCESS == "SUCCESS"``."""

    PENDING = "PENDING"
    """Not queued and not finished: running, parked in a wait (sleep, recv, get_event),
    or waiting for a worker to recover it or take it up."""
    ENQUEUED = "ENQUEUED"
    """On a queue, ready to run, waiting for a worker and for the queue's limits."""
    DELAYED = "DELAYED"
    """On a queue, not due yet (``delay=``); it becomes ENQUEUED when due."""
    SUCCESS = "SUCCESS"
    """Finished: it returned, and its result is recorded."""
    ERROR = "ERROR"
    """Finished: it raised, and its error is recorded (``result()`` raises it again)."""
    CANCELLED = "CANCELLED"
    """Stopped by ``cancel`` or by its ``timeout``; ``resume`` runs it again."""
    DEAD_LETTER = "DEAD_LETTER"
    """Set aside after crashing its worker more than ``max_recovery_attempts`` times in a
    row; ``resume`` runs it again once the cause is fixed."""

    @property
    def is_final(self) -> bool:
        """True for the statuses no worker moves on from by itself: SUCCESS, ERROR,
        CANCELLED and DEAD_LETTER (the last two can be resumed)."""
        return self in _FINAL


_FINAL = frozenset({Status.SUCCESS, Status.ERROR, Status.CANCELLED, Status.DEAD_LETTER})
