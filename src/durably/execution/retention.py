"""Retention, written once: finished workflows deleted in batches, then executor rows
nobody holds any more."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from durably.execution.effects import Protocol, Write

if TYPE_CHECKING:
    from durably.execution.host import Host


class Collected(NamedTuple):
    """What one collection deleted."""

    workflows: int
    executors: int


def collect(
    engine: Host,
    age: float,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> Protocol[Collected]:
    """Delete what finished more than ``age`` seconds ago, ``batch`` workflows per
    transaction (each short, so workers are never held up for long); ``progress`` hears
    the running total."""
    total = 0
    while True:
        rows = yield Write(engine.statements.gc_workflows(age, batch))
        deleted = int(rows[0].deleted)
        total += deleted
        if progress is not None:
            progress(total)
        if deleted < batch:
            break
    rows = yield Write(engine.statements.gc_executors(age))
    return Collected(total, int(rows[0].deleted))
