"""The two drivers of the engine's protocols: one performs effects by blocking the thread,
the other by awaiting (see ``durably.execution.effects``)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast
from typing import Protocol as TypingProtocol

from durably.errors import ConnectionLost
from durably.execution.effects import (
    Atomic,
    Call,
    HoldLease,
    Protocol,
    Read,
    Sleep,
    Wait,
    Watch,
    Write,
)
from durably.execution.host import Host
from durably.store.statements import Statement

if TYPE_CHECKING:
    from durably.runtime.lease import Lease
    from durably.runtime.notifier import Notifier
    from durably.store.database import AsyncDatabase, Database

T = TypeVar("T")


class Runner(Host, TypingProtocol):
    """What the drivers use of the engine (the runtime's ``Engine`` is one)."""

    @property
    def db(self) -> Database: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def lease(self) -> Lease: ...

    async def async_db(self) -> AsyncDatabase: ...


def _engine(host: Host) -> Runner:
    # Every host is the runtime's Engine; the execution layer only names its protocol.
    return cast("Runner", host)


def drive_sync(host: Host, gen: Protocol[T]) -> T:
    """Run a protocol to its end, performing each effect by blocking this thread."""
    engine = _engine(host)
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


async def drive_async(host: Host, gen: Protocol[T]) -> T:
    """Run a protocol to its end, performing each effect by awaiting."""
    engine = _engine(host)
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


def _settle_sync(engine: Runner, statements: Sequence[Statement], first: ConnectionLost) -> Any:
    return engine.db.settle(statements, first)


async def _settle_async(
    engine: Runner, statements: Sequence[Statement], first: ConnectionLost
) -> Any:
    db = await engine.async_db()
    return await db.settle(statements, first)
