"""Running statements on a connection the caller owns, inside the caller's transaction.

``app.enqueue_in`` and ``app.send_in`` write durably's rows with the caller's own writes,
so that both commit or roll back together. The statements here run on that connection
as it is: nothing in this module commits, rolls back, opens a savepoint or changes a
setting of it. A statement that fails aborts the caller's transaction like any of their
own would; the statements durably runs there are written not to fail on the duplicates
they expect (ON CONFLICT), and bad input is refused before any of them runs
(``check_sync``/``check_async``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg
from psycopg import pq

from durably.errors import UnusableConnection
from durably.store.committer import Result, _row_factory
from durably.store.statements import Statement

if TYPE_CHECKING:
    from durably.store.database import AsyncDatabase, Database

SyncConnection: TypeAlias = psycopg.Connection[Any]
AsyncConnection: TypeAlias = psycopg.AsyncConnection[Any]

# What names a database to the check: its name and the server's port, per URL of an app
# (read once from a connection of the app's own pool, so libpq's defaults and the
# environment count exactly as they do for the app).
Identity = tuple[str, int]
_identities: dict[str, Identity] = {}

_SQLALCHEMY_HINT = (
    " (with SQLAlchemy, pass the psycopg connection under the session's: "
    "session.connection().connection.driver_connection)"
)
_ASYNC_SQLALCHEMY_HINT = (
    " (with SQLAlchemy's AsyncSession, pass the psycopg connection under it: "
    "(await (await session.connection()).get_raw_connection()).driver_connection)"
)


# ------------------------------------------------------------------ checks


def check_sync(conn: object, db: Database) -> SyncConnection:
    """``conn`` if durably's writes can join its transaction; UnusableConnection, before
    anything runs on it, if not."""
    if isinstance(conn, psycopg.AsyncConnection):
        raise UnusableConnection(
            "this is an async connection (psycopg.AsyncConnection); use the _async twin "
            "(enqueue_in_async / send_in_async) with it"
        )
    if not isinstance(conn, psycopg.Connection):
        raise UnusableConnection(
            f"expected a psycopg (3) Connection, got {type(conn).__name__}{_SQLALCHEMY_HINT}"
        )
    _check_state(conn)
    identity = _identities.get(db.url)
    if identity is None:
        with db.pool.connection() as own:
            identity = _identities[db.url] = (own.info.dbname, own.info.port)
    _check_database(conn, identity)
    return conn


async def check_async(conn: object, db: AsyncDatabase) -> AsyncConnection:
    """Async twin of ``check_sync``."""
    if isinstance(conn, psycopg.Connection):
        raise UnusableConnection(
            "this is a blocking connection (psycopg.Connection); use enqueue_in / send_in "
            "with it, or pass a psycopg.AsyncConnection here"
        )
    if not isinstance(conn, psycopg.AsyncConnection):
        raise UnusableConnection(
            f"expected a psycopg (3) AsyncConnection, got {type(conn).__name__}"
            f"{_ASYNC_SQLALCHEMY_HINT}"
        )
    _check_state(conn)
    identity = _identities.get(db.url)
    if identity is None:
        async with db.pool.connection() as own:
            identity = _identities[db.url] = (own.info.dbname, own.info.port)
    _check_database(conn, identity)
    return conn


def _check_state(conn: SyncConnection | AsyncConnection) -> None:
    """Open, not failed, and either in a transaction or about to start one (a connection
    with autocommit off opens one at its first statement, which the caller commits)."""
    if conn.closed or conn.broken:
        raise UnusableConnection("the connection is closed; pass an open one")
    status = conn.info.transaction_status
    if status == pq.TransactionStatus.INERROR:
        raise UnusableConnection(
            "the connection's transaction has already failed (a statement in it raised); "
            "roll it back, then start again"
        )
    if status == pq.TransactionStatus.IDLE and conn.autocommit:
        raise UnusableConnection(
            "the connection is in autocommit mode with no transaction open: the write "
            "would commit at once, on its own. Open a transaction first (with "
            "conn.transaction(): ...), or use a connection with autocommit=False"
        )
    if conn.info.parameter_status("in_hot_standby") == "on":
        raise UnusableConnection(
            "the connection is to a read-only standby server; use one to the primary"
        )


def _check_database(conn: SyncConnection | AsyncConnection, identity: Identity) -> None:
    """Same database name and port as the app's connections. The host is not compared:
    one server answers to many names (a socket, localhost, its addresses)."""
    mine = (conn.info.dbname, conn.info.port)
    if mine != identity:
        raise UnusableConnection(
            f"the connection is to database {mine[0]!r} on port {mine[1]}, but the app's "
            f"schema lives in database {identity[0]!r} on port {identity[1]}; the writes "
            f"must go to the app's database to commit with yours"
        )


# ------------------------------------------------------------------ running


def run_sync(conn: SyncConnection, statements: Sequence[Statement]) -> Result:
    """Run statements in order on ``conn`` (one round trip), inside whatever transaction
    it has open: committing it, or rolling it back, is the caller's. The last
    statement's result (rows of its row type, or its rowcount), as ``committer.run_sync``
    returns it."""
    if len(statements) == 1:
        return _result_sync(_execute(conn, statements[0]), statements[0])
    with conn.pipeline():
        cursors = [_execute(conn, st) for st in statements]
    return _result_sync(cursors[-1], statements[-1])


async def run_async(conn: AsyncConnection, statements: Sequence[Statement]) -> Result:
    """Async twin of run_sync."""
    if len(statements) == 1:
        return await _result_async(await _execute_async(conn, statements[0]), statements[0])
    async with conn.pipeline():
        cursors = [await _execute_async(conn, st) for st in statements]
    return await _result_async(cursors[-1], statements[-1])


# The caller's prepare settings are kept (no prepare=True as on durably's own pool): a
# connection behind a transaction-mode pooler may have prepared statements turned off.


def _execute(conn: SyncConnection, st: Statement) -> psycopg.Cursor[Any]:
    return conn.cursor(row_factory=_row_factory(st.row)).execute(st.sql, st.params)


async def _execute_async(conn: AsyncConnection, st: Statement) -> psycopg.AsyncCursor[Any]:
    return await conn.cursor(row_factory=_row_factory(st.row)).execute(st.sql, st.params)


def _result_sync(cursor: psycopg.Cursor[Any], st: Statement) -> Result:
    return cursor.fetchall() if st.returns == "rows" else cursor.rowcount


async def _result_async(cursor: psycopg.AsyncCursor[Any], st: Statement) -> Result:
    return await cursor.fetchall() if st.returns == "rows" else cursor.rowcount
