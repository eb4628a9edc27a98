"""The effects the engine's decisions yield: what to run, write, read or wait for.

The logic of recording, replaying and fencing exists once, as generators in
``durably.execution.protocol`` and its neighbours. They never block: they yield an
effect ("call the user's function", "write this statement", "sleep") and receive its
result. Two drivers in ``durably.runtime.drivers`` perform them, one by blocking and one
by awaiting: this is how sync and async workflows share one implementation (the psycopg
pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from durably.store.statements import Statement

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """Run user code (a step body or a workflow body)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause (between step retries)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Write:
    """Run a write statement through group commit."""

    statement: Statement


@dataclass(frozen=True, slots=True)
class Read:
    """Run a read statement directly."""

    statement: Statement


@dataclass(frozen=True, slots=True)
class Watch:
    """Read the notification counter of some keys (before checking the database)."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait until a key of ``keys`` is notified past ``since``, or ``seconds`` pass."""

    keys: tuple[str, ...]
    since: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Atomic:
    """Run statements in one transaction; the result is the last statement's."""

    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class HoldLease:
    """Wait until this executor's lease is valid; the result is the lease's generation."""


Effect = Call | Sleep | Write | Read | Watch | Wait | Atomic | HoldLease
Protocol = Generator[Effect, Any, T]
