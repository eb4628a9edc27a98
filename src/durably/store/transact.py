"""A user's function and its checkpoint in one database transaction (``@app.transaction``).

The function gets the open connection, runs its own SQL, and returns; the checkpoint
statement is then sent together with the COMMIT (one round trip), and both commit, or
neither does: a checkpoint that writes no row (the workflow was taken over, or the
operation is already recorded) fails, and the COMMIT becomes a rollback. The
transaction's own conflicts (serialization failure, deadlock) leave as
``TransactionConflict`` for the caller to run it again; a connection that broke leaves
as a psycopg error on a closed connection (the store makes it ``ConnectionLost``): the
commit may or may not have happened, and the caller finds out by reading its checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import psycopg
from psycopg import pq

from durably.errors import TransactionConflict, TransactionMisuse
from durably.store import faults, sqlfile
from durably.store.dialect import Dialect
from durably.store.statements import Statement

Checkpoint = Callable[[Any], Statement | None]
"""Builds the checkpoint statement from the function's result (encoding it first, so a
value that cannot be stored rolls the transaction back); None: no checkpoint (a call
outside any workflow)."""

# A checkpoint statement that wrote no row fails with this in its message (.sql files).
_NOT_WRITTEN = "durably: checkpoint not written"


def _not_written(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.errors.InvalidTextRepresentation) and _NOT_WRITTEN in str(exc)


class Transacted(NamedTuple):
    """What one transaction did: the function's result, and whether it committed (False:
    its checkpoint wrote no row, so everything was rolled back)."""

    value: Any
    committed: bool


_sql = sqlfile.schemaless


def _begin(isolation: str) -> str:
    return _sql("begin_" + isolation.replace(" ", "_"))


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
            f"error propagate, or put the statement in a savepoint (with conn.transaction():)"
        )
    if status != pq.TransactionStatus.INTRANS:
        raise TransactionMisuse(
            f"transaction {name!r} ended its transaction itself (COMMIT or ROLLBACK in its "
            f"SQL, or conn.commit()): what it committed is outside durably's exactly-once "
            f"guarantee. Never commit or roll back inside a transaction function; raise to "
            f"roll back"
        )


def _conflict(exc: psycopg.Error, name: str) -> TransactionConflict:
    return TransactionConflict(
        f"transaction {name!r} met a conflict with a concurrent transaction "
        f"({type(exc).__name__}, SQLSTATE {exc.sqlstate}); it was rolled back"
    )


def _open(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a transaction is still open on ``conn`` (and needs rolling back)."""
    return not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE


def transact_sync(
    conn: psycopg.Connection[Any],
    dialect: Dialect,
    name: str,
    isolation: str,
    body: Callable[[psycopg.Connection[Any]], Any],
    checkpoint: Checkpoint,
    pipeline: bool = False,
) -> Transacted:
    """Run ``body(conn)`` and its checkpoint in one transaction on ``conn`` (autocommit).

    With ``pipeline``, everything from BEGIN to COMMIT is sent in libpq's pipeline mode:
    a function that only writes costs one round trip in all, but its statements' errors
    surface when their results are read, or at the end.
    """
    try:
        if pipeline:
            with conn.pipeline():
                conn.execute(_begin(isolation))
                value = body(conn)
                _returned(name, conn, pipelined=True)
                statement = checkpoint(value)
                if statement is not None:
                    conn.execute(statement.sql, statement.params, prepare=True)
                conn.execute(_sql("commit_transaction"))
        else:
            conn.execute(_begin(isolation))
            value = body(conn)
            _returned(name, conn, pipelined=False)
            statement = checkpoint(value)
            if statement is None:
                conn.execute(_sql("commit_transaction"))
                return Transacted(value, True)
            with conn.pipeline():  # the checkpoint and the COMMIT: one round trip
                conn.execute(statement.sql, statement.params, prepare=True)
                conn.execute(_sql("commit_transaction"))
    except psycopg.Error as exc:
        _roll_back(conn)
        if _not_written(exc):
            return Transacted(None, False)
        if dialect.retryable(exc):
            raise _conflict(exc, name) from exc
        raise
    except BaseException:
        _roll_back(conn)
        raise
    if statement is not None:
        faults.after_commit(conn, (statement.name,))
    return Transacted(value, True)


def _returned(
    name: str, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], pipelined: bool
) -> None:
    """The function returned: its transaction must still be open. In pipeline mode only
    a closed connection can be told yet (the status waits for the results)."""
    if not pipelined or conn.closed:
        _misuse(name, conn)


def _roll_back(conn: psycopg.Connection[Any]) -> None:
    if _open(conn):
        # A connection that cannot roll back is broken; the pool discards it.
        with contextlib.suppress(psycopg.Error):
            conn.execute(_sql("rollback_transaction"))


async def transact_async(
    conn: psycopg.AsyncConnection[Any],
    dialect: Dialect,
    name: str,
    isolation: str,
    body: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]],
    checkpoint: Checkpoint,
    pipeline: bool = False,
) -> Transacted:
    """Async twin of ``transact_sync``: ``body`` is a coroutine function."""
    try:
        if pipeline:
            async with conn.pipeline():
                await conn.execute(_begin(isolation))
                value = await body(conn)
                _returned(name, conn, pipelined=True)
                statement = checkpoint(value)
                if statement is not None:
                    await conn.execute(statement.sql, statement.params, prepare=True)
                await conn.execute(_sql("commit_transaction"))
        else:
            await conn.execute(_begin(isolation))
            value = await body(conn)
            _returned(name, conn, pipelined=False)
            statement = checkpoint(value)
            if statement is None:
                await conn.execute(_sql("commit_transaction"))
                return Transacted(value, True)
            async with conn.pipeline():
                await conn.execute(statement.sql, statement.params, prepare=True)
                await conn.execute(_sql("commit_transaction"))
    except psycopg.Error as exc:
        await _roll_back_async(conn)
        if _not_written(exc):
            return Transacted(None, False)
        if dialect.retryable(exc):
            raise _conflict(exc, name) from exc
        raise
    except BaseException:
        await _roll_back_async(conn)
        raise
    if statement is not None:
        await faults.after_commit_async(conn, (statement.name,))
    return Transacted(value, True)


async def _roll_back_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _open(conn):
        with contextlib.suppress(psycopg.Error):
            await conn.execute(_sql("rollback_transaction"))
