"""Workflow statuses, as stored in the database."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a workflow stands."""

    PENDING = "PENDING"  # running, or parked in a wait
    ENQUEUED = "ENQUEUED"
    DELAYED = "DELAYED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"  # also when a timeout fired
    DEAD_LETTER = "DEAD_LETTER"  # crashed its worker more than max_recovery_attempts times

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({Status.SUCCESS, Status.ERROR, Status.CANCELLED, Status.DEAD_LETTER})
