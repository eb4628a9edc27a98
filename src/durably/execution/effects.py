"""The effects the engine's decisions yield: what to run, write, read, wait for or report.

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
    # ``fn`` is a coroutine function (known from its spec: not inspected per call).
    is_async: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause (between step retries)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Write:
    """Run a write statement through group commit.

    ``for_caller``: a start or enqueue whose caller waits only for it (it gets a handle
    back): it never queues behind a batch of the running workflows' checkpoints."""

    statement: Statement
    for_caller: bool = False


@dataclass(frozen=True, slots=True)
class Read:
    """Run a read statement directly (on the app's other ``database``, when given)."""

    statement: Statement
    database: str | None = None


@dataclass(frozen=True, slots=True)
class Transact:
    """Run a transaction function: ``fn(conn, *args, **kwargs)`` in one database
    transaction (of ``database``, else the app's) with the checkpoint statement that
    ``checkpoint`` builds from its result; the answer is a ``store.transact.Transacted``."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    isolation: str
    database: str | None
    checkpoint: Callable[[Any], Statement | None]
    pipeline: bool = False
    # The lease generation the run held when it passed its lease gate (None: outside a
    # workflow). The function may only start under that same generation: waiting for a
    # pooled connection can outlast the lease.
    generation: int | None = None


class LeaseMoved(Exception):
    """A transaction function did not start: the executor's lease lapsed (or was renewed
    after a gap) while its connection was being obtained. Nothing ran; the run passes
    its lease gate again, which checks that the workflow is still its own."""


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


@dataclass(frozen=True, slots=True)
class StepFailed:
    """Report an attempt of a step body that raised (the runtime logs it): the
    ``attempt`` of ``attempts`` allowed, and ``retry_in`` seconds until the next one
    (None: no retry, the error is the step's outcome)."""

    workflow_id: str
    workflow_name: str
    step: str
    position: int
    attempt: int
    attempts: int
    error: BaseException
    retry_in: float | None


Effect = Call | Sleep | Write | Read | Watch | Wait | Atomic | HoldLease | StepFailed | Transact
Protocol = Generator[Effect, Any, T]
