"""Retention, written once: finished workflows deleted in batches, then executor rows
nobody holds any more; the rules of an app's retention policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from durably.errors import ConfigurationError
from durably.execution.effects import Atomic, Protocol
from durably.status import Status

if TYPE_CHECKING:
    from durably.execution.host import Host

# The statuses retention may delete: DEAD_LETTER is unfinished (it can be resumed).
FINISHED = (Status.SUCCESS.value, Status.ERROR.value, Status.CANCELLED.value)


class Collected(NamedTuple):
    """What one collection deleted."""

    workflows: int
    executors: int


class Rule(NamedTuple):
    """Delete workflows that finished with one of ``statuses`` ``age`` seconds ago."""

    statuses: tuple[str, ...]
    age: float


def rules_of(policy: timedelta | Mapping[str, timedelta] | None) -> tuple[Rule, ...]:
    """An app's ``retention`` as rules: one age for every finished status, or an age per
    status (statuses not named are kept); refuses anything else, naming it."""
    if policy is None:
        return ()
    if isinstance(policy, timedelta):
        return (Rule(FINISHED, _seconds(policy, "retention")),)
    if not isinstance(policy, Mapping) or not policy:
        raise ConfigurationError(
            f"retention must be a timedelta or a mapping of finished status to timedelta "
            f"(e.g. {{'SUCCESS': timedelta(days=7)}}), got {policy!r}"
        )
    by_age: dict[float, list[str]] = {}
    for status, age in policy.items():
        name = str(status.value if isinstance(status, Status) else status).upper()
        if name not in FINISHED:
            raise ConfigurationError(
                f"retention names status {status!r}; only finished workflows are deleted: "
                f"use {', '.join(FINISHED)}"
            )
        by_age.setdefault(_seconds(age, f"retention[{name!r}]"), []).append(name)
    return tuple(Rule(tuple(names), age) for age, names in sorted(by_age.items()))


def _seconds(age: object, label: str) -> float:
    if not isinstance(age, timedelta) or age <= timedelta(0):
        raise ConfigurationError(
            f"{label} must be a positive timedelta (e.g. timedelta(days=30)), got {age!r}"
        )
    return age.total_seconds()


def delete_batch(engine: Host, rule: Rule, batch: int) -> Protocol[int]:
    """Delete one batch under ``rule`` in a transaction of its own (never a group commit:
    a big delete must not lengthen the steps' shared commits); return how many went."""
    rows = yield Atomic((engine.statements.gc_workflows(rule.age, batch, rule.statuses),))
    return int(rows[0].deleted)


def delete_executors(engine: Host, age: float) -> Protocol[int]:
    """Delete executor rows whose lease ended ``age`` seconds ago and that own nothing."""
    rows = yield Atomic((engine.statements.gc_executors(age),))
    return int(rows[0].deleted)


def collect(
    engine: Host,
    rule: Rule,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> Protocol[Collected]:
    """Delete what ``rule`` names, ``batch`` workflows per transaction (each short, so
    workers are never held up for long); ``progress`` hears the running total."""
    total = 0
    while True:
        deleted = yield from delete_batch(engine, rule, batch)
        total += deleted
        if progress is not None:
            progress(total)
        if deleted < batch:
            break
    executors = yield from delete_executors(engine, rule.age)
    return Collected(total, executors)
