"""The two drivers of the engine's protocols: one performs effects by blocking the thread,
the other by awaiting (see ``durably.execution.effects``)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast
from typing import Protocol as TypingProtocol

from durably.errors import ConnectionLost, LostOwnership
from durably.execution import observe
from durably.execution.effects import (
    Atomic,
    Call,
    HoldLease,
    LeaseMoved,
    Protocol,
    Read,
    Sleep,
    StepFailed,
    Transact,
    Wait,
    Watch,
    Write,
)
from durably.execution.host import Host
from durably.runtime import logs
from durably.store import borrowed
from durably.store.statements import Statement

if TYPE_CHECKING:
    from durably.execution.context import WorkflowContext
    from durably.runtime.lease import Lease
    from durably.runtime.notifier import Notifier
    from durably.runtime.other_databases import OtherDatabases
    from durably.store.database import AsyncDatabase, Database
    from durably.store.transact import Transacted

T = TypeVar("T")


class Runner(Host, TypingProtocol):
    """What the drivers use of the engine (the runtime's ``Engine`` is one)."""

    @property
    def db(self) -> Database: ...

    @property
    def other_databases(self) -> OtherDatabases: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def lease(self) -> Lease: ...

    async def async_db(self) -> AsyncDatabase: ...

    def opened_async_db(self) -> AsyncDatabase | None: ...

    def body_started(self) -> WorkflowContext | None: ...

    def body_ended(self, ctx: WorkflowContext | None) -> None: ...


def _engine(host: Host) -> Runner:
    # Every host is the runtime's Engine; the execution layer only names its protocol.
    return cast("Runner", host)


class _Steps:
    """A protocol being driven: the next effect, given the answer to the last one."""

    __slots__ = ("error", "gen", "send", "value")

    def __init__(self, gen: Protocol[Any]) -> None:
        self.gen = gen
        self.send: Any = None
        self.error: BaseException | None = None
        self.value: Any = None

    def next(self) -> Any:
        """The next effect, or None once the protocol returned (its value in ``value``)."""
        send, error = self.send, self.error
        self.send = self.error = None
        try:
            return self.gen.send(send) if error is None else self.gen.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            return None


def drive_sync(host: Host, gen: Protocol[T]) -> T:
    """Run a protocol to its end, performing each effect by blocking this thread."""
    engine, steps = _engine(host), _Steps(gen)
    while (effect := steps.next()) is not None:
        try:
            steps.send = _perform_sync(engine, effect)
        except BaseException as exc:
            steps.error = exc
    return steps.value  # type: ignore[no-any-return]


async def drive_async(host: Host, gen: Protocol[T]) -> T:
    """Run a protocol to its end, performing each effect by awaiting."""
    engine, steps = _engine(host), _Steps(gen)
    db = engine.opened_async_db() or await engine.async_db()
    while (effect := steps.next()) is not None:
        try:
            steps.send = await _perform_async(engine, db, effect)
        except BaseException as exc:
            steps.error = exc
    return steps.value  # type: ignore[no-any-return]


# A database that is restarting, failing over or briefly unreachable must not turn into
# a recorded workflow error. A statement whose connection broke may or may not have
# committed: it is never re-run blindly but settled by the store (``settle`` runs its
# settling form, Statement.retried, which finds its own earlier effect). Past the retry
# budget the workflow is abandoned unrecorded and recovered later.


def _statements(effect: Any) -> Sequence[Statement]:
    return effect.statements if type(effect) is Atomic else (effect.statement,)


def _perform_sync(engine: Runner, effect: Any) -> Any:
    kind = type(effect)
    if kind is Write or kind is Read or kind is Atomic:
        db = engine.db if kind is not Read or effect.database is None else _other(engine, effect)
        try:
            if kind is Write:
                return db.write(effect.statement, for_caller=effect.for_caller)
            if kind is Read:
                return db.run(effect.statement)
            return db.run_transaction(effect.statements)
        except ConnectionLost as exc:
            return db.settle(_statements(effect), exc)
    if kind is HoldLease:
        return engine.lease.hold()
    if kind is Transact:
        if inspect.iscoroutinefunction(effect.fn):
            raise _async_in_sync(effect.fn)
        ctx = engine.body_started()
        try:
            return _transact_sync(engine, effect)
        finally:
            engine.body_ended(ctx)
    if kind is Call:
        if effect.is_async:
            raise _async_in_sync(effect.fn)
        ctx = engine.body_started()
        try:
            result = effect.fn(*effect.args, **effect.kwargs)
        finally:
            engine.body_ended(ctx)
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            raise _async_in_sync(effect.fn)
        return result
    if kind is Watch:
        return engine.notifier.generation(*effect.keys)
    if kind is Wait:
        return engine.notifier.wait(effect.keys, effect.since, effect.seconds)
    if kind is Sleep:
        time.sleep(effect.seconds)
    elif kind is StepFailed:
        logs.step_failed(effect)
        if engine.observers:
            observe.step_failed(engine.observers, effect)
    return None


# Results that are never awaitable: no isinstance check against the Awaitable ABC.
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, list, dict, tuple})


def _async_in_sync(fn: Callable[..., Any]) -> TypeError:
    return TypeError(f"{fn.__qualname__} is async; call it from an async workflow with await")


async def _perform_async(engine: Runner, db: AsyncDatabase, effect: Any) -> Any:
    kind = type(effect)
    if kind is Read and effect.database is not None:
        db = await engine.other_databases.for_loop(effect.database)
    if kind is Write or kind is Read or kind is Atomic:
        try:
            if kind is Write:
                return await db.write(effect.statement, for_caller=effect.for_caller)
            if kind is Read:
                return await db.run(effect.statement)
            return await db.run_transaction(effect.statements)
        except ConnectionLost as exc:
            return await db.settle(_statements(effect), exc)
    if kind is HoldLease:
        return await engine.lease.hold_async()
    if kind is Transact:  # an async function (a sync one is driven by drive_sync)
        if effect.database is not None:
            db = await engine.other_databases.for_loop(effect.database)
        ctx = engine.body_started()
        try:
            return await db.transact(
                effect.name,
                effect.isolation,
                _body(engine, effect),
                effect.checkpoint,
                effect.pipeline,
            )
        finally:
            engine.body_ended(ctx)
    if kind is Call:
        ctx = engine.body_started()
        try:
            if effect.is_async:
                return await effect.fn(*effect.args, **effect.kwargs)
            # A blocking function must not stall the event loop.
            result = await asyncio.to_thread(effect.fn, *effect.args, **effect.kwargs)
            return (await result) if inspect.isawaitable(result) else result
        finally:
            engine.body_ended(ctx)
    if kind is Watch:
        return engine.notifier.generation(*effect.keys)
    if kind is Wait:
        return await engine.notifier.wait_async(effect.keys, effect.since, effect.seconds)
    if kind is Sleep:
        await asyncio.sleep(effect.seconds)
    elif kind is StepFailed:
        logs.step_failed(effect)
        if engine.observers:
            observe.step_failed(engine.observers, effect)
    return None


def _other(engine: Runner, effect: Read | Transact) -> Database:
    assert effect.database is not None
    return engine.other_databases.sync(effect.database)


def _body(engine: Runner, effect: Transact) -> Callable[[Any], Any]:
    """The transaction function, to be called with the connection as its first argument,
    once the lease it passed its gate under is still the one held (``LeaseMoved``)."""

    if inspect.iscoroutinefunction(effect.fn):

        async def body_async(conn: Any) -> Any:
            _same_lease(engine, effect)
            return await effect.fn(conn, *effect.args, **effect.kwargs)

        return body_async

    def body(conn: Any) -> Any:
        _same_lease(engine, effect)
        return effect.fn(conn, *effect.args, **effect.kwargs)

    return body


def _same_lease(engine: Runner, effect: Transact) -> None:
    if effect.generation is None:
        return  # outside a workflow: no lease to hold
    try:
        held = engine.lease.current()
    except LostOwnership:
        held = None  # revoked: the gate says so, with its reason
    if held != effect.generation:
        raise LeaseMoved


def _transact_sync(engine: Runner, effect: Transact) -> Transacted:
    db = engine.db if effect.database is None else _other(engine, effect)
    return db.transact(
        effect.name, effect.isolation, _body(engine, effect), effect.checkpoint, effect.pipeline
    )


# ------------------------------------------------------------------ borrowed connections
# ``app.enqueue_in`` / ``app.send_in``: the same protocols, their statements run on a
# connection the caller owns, inside the caller's open transaction (``store.borrowed``):
# no group commit, no commit or rollback of ours, and no settling after a broken link
# (the caller's transaction is lost with it, and theirs to retry).


def _borrowable(effect: Any) -> Sequence[Statement]:
    kind = type(effect)
    if kind is Write or kind is Read or kind is Atomic:
        return _statements(effect)
    # A protocol that waits, calls user code or needs the lease has no place in a
    # transaction it does not own: a programming error, not bad input.
    raise TypeError(f"{kind.__name__} cannot be performed inside the caller's transaction")


def drive_borrowed_sync(conn: borrowed.SyncConnection, gen: Protocol[T]) -> T:
    """Run a protocol of statements on the caller's connection, in its transaction."""
    steps = _Steps(gen)
    while (effect := steps.next()) is not None:
        try:
            steps.send = borrowed.run_sync(conn, _borrowable(effect))
        except BaseException as exc:
            steps.error = exc
    return steps.value  # type: ignore[no-any-return]


async def drive_borrowed_async(conn: borrowed.AsyncConnection, gen: Protocol[T]) -> T:
    """Async twin of ``drive_borrowed_sync``."""
    steps = _Steps(gen)
    while (effect := steps.next()) is not None:
        try:
            steps.send = await borrowed.run_async(conn, _borrowable(effect))
        except BaseException as exc:
            steps.error = exc
    return steps.value  # type: ignore[no-any-return]
