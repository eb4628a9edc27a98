"""A user's function and its checkpoint in one database transaction (``@app.transaction``).

The function gets the open connection, runs its own SQL, and returns; the checkpoint
statement is then written on the same connection and both commit together, or neither
does. A checkpoint that writes no row (the workflow was taken over, or the operation is
already recorded) rolls the function's writes back. The transaction's own conflicts
(serialization failure, deadlock) leave as ``TransactionConflict`` for the caller to run
it again; a connection that broke leaves as ``ConnectionLost``: the commit may or may
not have happened, and the caller finds out by reading its checkpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import psycopg
from psycopg import pq

from durably.errors import TransactionConflict, TransactionMisuse
from durably.store import faults
from durably.store.dialect import Dialect
from durably.store.statements import Statement

ISOLATION = {
    "serializable": psycopg.IsolationLevel.SERIALIZABLE,
    "repeatable read": psycopg.IsolationLevel.REPEATABLE_READ,
    "read committed": psycopg.IsolationLevel.READ_COMMITTED,
}

Checkpoint = Callable[[Any], Statement | None]
"""Builds the checkpoint statement from the function's result (encoding it first, so a
value that cannot be stored rolls the transaction back); None: no checkpoint (a call
outside any workflow)."""


class Transacted(NamedTuple):
    """What one transaction did: the function's result, and whether it committed (False:
    its checkpoint wrote no row, so everything was rolled back)."""

    value: Any
    committed: bool


def _misuse(name: str, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """The function must leave its transaction open: durably commits it with the checkpoint."""
    if conn.closed:
        raise TransactionMisuse(
            f"transaction {name!r} closed its connection; nothing it wrote was committed. "
            f"Leave the connection open: durably commits it together with the checkpoint"
        )
    status = conn.info.transaction_status
    if status == pq.TransactionStatus.INERROR:
        raise TransactionMisuse(
            f"transaction {name!r} returned from an aborted transaction (a statement failed "
            f"and its error was caught inside the function); nothing was committed. Let the "
            f"error propagate, or use a savepoint (with conn.transaction():) around it"
        )
    if status != pq.TransactionStatus.INTRANS:
        raise TransactionMisuse(
            f"transaction {name!r} ended its transaction itself (COMMIT or ROLLBACK in its "
            f"SQL): what it committed is outside durably's exactly-once guarantee. Never "
            f"commit or roll back inside a transaction function; raise to roll back"
        )


def _conflict(exc: psycopg.Error, name: str) -> TransactionConflict:
    return TransactionConflict(
        f"transaction {name!r} met a conflict with a concurrent transaction "
        f"({type(exc).__name__}, SQLSTATE {exc.sqlstate}); it was rolled back"
    )


def transact_sync(
    conn: psycopg.Connection[Any],
    dialect: Dialect,
    name: str,
    isolation: str,
    body: Callable[[psycopg.Connection[Any]], Any],
    checkpoint: Checkpoint,
) -> Transacted:
    """Run ``body(conn)`` and its checkpoint in one transaction on ``conn`` (autocommit)."""
    conn.isolation_level = ISOLATION[isolation]
    try:
        written = 1
        with conn.transaction() as tx:
            value = body(conn)
            _misuse(name, conn)
            statement = checkpoint(value)
            if statement is not None:
                written = conn.execute(statement.sql, statement.params, prepare=True).rowcount
                if written != 1:
                    raise psycopg.Rollback(tx)
        if statement is not None and written == 1:
            faults.after_commit(conn, (statement.name,))
        return Transacted(value, written == 1)
    except psycopg.Error as exc:
        if dialect.retryable(exc):
            raise _conflict(exc, name) from exc
        raise
    finally:
        if not conn.closed:
            conn.isolation_level = None


async def transact_async(
    conn: psycopg.AsyncConnection[Any],
    dialect: Dialect,
    name: str,
    isolation: str,
    body: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]],
    checkpoint: Checkpoint,
) -> Transacted:
    """Async twin of ``transact_sync``: ``body`` is a coroutine function."""
    await conn.set_isolation_level(ISOLATION[isolation])
    try:
        written = 1
        async with conn.transaction() as tx:
            value = await body(conn)
            _misuse(name, conn)
            statement = checkpoint(value)
            if statement is not None:
                cursor = await conn.execute(statement.sql, statement.params, prepare=True)
                written = cursor.rowcount
                if written != 1:
                    raise psycopg.Rollback(tx)
        if statement is not None and written == 1:
            await faults.after_commit_async(conn, (statement.name,))
        return Transacted(value, written == 1)
    except psycopg.Error as exc:
        if dialect.retryable(exc):
            raise _conflict(exc, name) from exc
        raise
    finally:
        if not conn.closed:
            await conn.set_isolation_level(None)
