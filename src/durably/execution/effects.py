"""The engine's decisions are generators that yield effects; two small drivers perform them.

The logic of recording, replaying and fencing exists once, as generators in
``durably.execution.protocol``. They never block: they yield an effect ("call the user's
function", "write this statement", "sleep") and receive its result. ``drive_sync``
performs effects by blocking the thread; ``drive_async`` performs them by awaiting.
This is how sync and async workflows share one implementation (the psycopg pattern).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from durably.errors import ConnectionLost
from durably.store.statements import Statement

if TYPE_CHECKING:
    from durably.runtime.engine import Engine

T = TypeVar("T")
log = logging.getLogger("durably")


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


def drive_sync(engine: Engine, gen: Protocol[T]) -> T:
    """Run a protocol to its end, performing each effect by blocking this thread."""
    send: Any = None
    error: BaseException | None = None
    db = engine.db
    while True:
        try:
            effect = gen.send(send) if error is None else gen.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send, error = None, None
        try:
            if type(effect) is Write:
                try:
                    send = db.write(effect.statement)
                except ConnectionLost as exc:
                    send = _settle_sync(engine, (effect.statement,), exc)
            elif type(effect) is HoldLease:
                send = engine.lease.hold()
            elif type(effect) is Call:
                send = effect.fn(*effect.args, **effect.kwargs)
                if inspect.isawaitable(send):
                    raise TypeError(
                        f"{effect.fn.__qualname__} is async; call it from an async workflow "
                        f"with await"
                    )
            elif type(effect) is Read:
                try:
                    send = db.run(effect.statement)
                except ConnectionLost as exc:
                    send = _settle_sync(engine, (effect.statement,), exc)
            elif type(effect) is Watch:
                send = engine.notifier.generation(*effect.keys)
            elif type(effect) is Wait:
                send = engine.notifier.wait(effect.keys, effect.since, effect.seconds)
            elif type(effect) is Atomic:
                try:
                    send = db.run_transaction(effect.statements)
                except ConnectionLost as exc:
                    send = _settle_sync(engine, effect.statements, exc)
            elif type(effect) is Sleep:
                time.sleep(effect.seconds)
        except BaseException as exc:
            error = exc


async def drive_async(engine: Engine, gen: Protocol[T]) -> T:
    """Run a protocol to its end, performing each effect by awaiting."""
    send: Any = None
    error: BaseException | None = None
    db = await engine.async_db()
    while True:
        try:
            effect = gen.send(send) if error is None else gen.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send, error = None, None
        try:
            if type(effect) is Write:
                try:
                    send = await db.write(effect.statement)
                except ConnectionLost as exc:
                    send = await _settle_async(engine, (effect.statement,), exc)
            elif type(effect) is HoldLease:
                send = await engine.lease.hold_async()
            elif type(effect) is Call:
                if inspect.iscoroutinefunction(effect.fn):
                    send = await effect.fn(*effect.args, **effect.kwargs)
                else:
                    # A blocking function must not stall the event loop.
                    send = await asyncio.to_thread(effect.fn, *effect.args, **effect.kwargs)
                    if inspect.isawaitable(send):
                        send = await send
            elif type(effect) is Read:
                try:
                    send = await db.run(effect.statement)
                except ConnectionLost as exc:
                    send = await _settle_async(engine, (effect.statement,), exc)
            elif type(effect) is Watch:
                send = engine.notifier.generation(*effect.keys)
            elif type(effect) is Wait:
                send = await engine.notifier.wait_async(effect.keys, effect.since, effect.seconds)
            elif type(effect) is Atomic:
                try:
                    send = await db.run_transaction(effect.statements)
                except ConnectionLost as exc:
                    send = await _settle_async(engine, effect.statements, exc)
            elif type(effect) is Sleep:
                await asyncio.sleep(effect.seconds)
        except BaseException as exc:
            error = exc


# A database that is restarting, failing over or briefly unreachable must not turn into
# a recorded workflow error. A statement whose connection broke may or may not have
# committed: it is never re-run blindly but settled by the store (Database.settle runs
# its settling form, Statement.retried, which finds its own earlier effect). Past the
# retry budget the workflow is abandoned unrecorded and recovered later.


def _settle_sync(engine: Engine, statements: Sequence[Statement], first: ConnectionLost) -> Any:
    return engine.db.settle(statements, first)


async def _settle_async(
    engine: Engine, statements: Sequence[Statement], first: ConnectionLost
) -> Any:
    db = await engine.async_db()
    return await db.settle(statements, first)
