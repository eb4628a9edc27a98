"""Statements on an autocommit connection without cursors: psycopg's own dumpers and
loaders, half the Python of ``cursor.execute`` (a step is one statement, a batch a few).

A psycopg cursor costs about 70 microseconds of Python for one prepared statement, and a
batch's pipeline and transaction blocks as much again. Only the dumping, the round trip
and the loading are needed: this does those with the same adapters, so values go in and
come out exactly as through a cursor. The statements of one call go out in one libpq
pipeline ending in one Sync: PostgreSQL runs what lies between two Syncs as one
transaction (committed at the Sync, rolled back whole if any fails), so a group-commit
batch needs no BEGIN and COMMIT; one statement already prepared goes alone. Statements
run prepared under names of this module's own (``_durably_N``), kept per connection.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import weakref
from collections.abc import Callable, Generator, Sequence
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import Transformer
from psycopg.generators import execute, fetch_many, send

from durably.store.statements import Statement

try:  # psycopg's query conversion (named placeholders, parameter dumping)
    from psycopg._queries import PostgresQuery

    AVAILABLE = True
except ImportError:  # pragma: no cover - a psycopg that moved it: cursors, as before
    AVAILABLE = False


class _Session:
    """What this module keeps per connection: the names of the statements it prepared
    there, and one Transformer (its dumpers and loaders are looked up once, as a cursor
    keeps its own; used under the connection's lock, one statement at a time)."""

    __slots__ = ("prepared", "tx")

    def __init__(self, conn: Any) -> None:
        self.prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.tx = Transformer(conn)


_sessions: weakref.WeakKeyDictionary[Any, _Session] = weakref.WeakKeyDictionary()
# Names are never reused on a connection, even after its set was dropped.
_numbers = itertools.count()

_FATAL = pq.ExecStatus.FATAL_ERROR
_SYNCED = pq.ExecStatus.PIPELINE_SYNC


class Outcome:
    """What a statement returned: its rows (as the statement's row type) or rowcount."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result


class _Call:
    """One statement of a run: its parameters dumped, the name it runs prepared under."""

    __slots__ = ("key", "name", "query", "statement", "tx")

    def __init__(self, session: _Session, st: Statement) -> None:
        self.statement = st
        self.tx = session.tx
        self.query = PostgresQuery(self.tx)
        self.query.convert(st.sql, st.params)
        self.name: bytes | None = None  # None: unnamed, planned each time
        self.key: tuple[bytes, tuple[int, ...]] | None = None  # set: to prepare first
        if st.prepare:
            key = (self.query.query, tuple(self.query.types or ()))
            self.name = session.prepared.get(key)
            if self.name is None:
                self.name = f"_durably_{next(_numbers)}".encode()
                self.key = key

    def send(self, pgconn: Any) -> None:
        query = self.query
        if self.key is not None:
            pgconn.send_prepare(self.name, query.query, param_types=query.types)
        if self.name is None:
            pgconn.send_query_params(
                query.query, query.params, param_formats=query.formats, param_types=query.types
            )
        else:
            pgconn.send_query_prepared(self.name, query.params, param_formats=query.formats)

    def read(self, res: Any) -> Any:
        """The statement's result, as a cursor would give it."""
        st = self.statement
        if st.returns != "rows":
            count = res.command_tuples
            return -1 if count is None else count
        self.tx.set_pgresult(res)
        if st.row is None:
            return self.tx.load_rows(0, res.ntuples, tuple)
        encoding = self.tx.encoding
        names = tuple(res.fname(i).decode(encoding) for i in range(res.nfields))
        return self.tx.load_rows(0, res.ntuples, _row_maker(st.row, names))


@functools.cache
def _row_maker(row: type[tuple[Any, ...]], names: tuple[str, ...]) -> Callable[[Any], Any]:
    """Builds a row of type ``row`` from values of columns ``names``: by position when
    the columns are the row's fields in order, else by name (which fails loudly on a
    column the row does not have, as a cursor's kwargs_row would)."""
    if names == getattr(row, "_fields", None):
        return functools.partial(tuple.__new__, row)

    def by_name(values: Any) -> Any:
        return row(**dict(zip(names, values, strict=True)))

    return by_name


Gen = Generator[Any, Any, list[Any]]


def _exchange(conn: Any, calls: list[_Call]) -> Gen:
    """Send every call in one pipeline ending in one Sync and read every reply: the
    result of each call's execution. One statement prepared already needs no pipeline:
    it goes alone, with its own Sync (about 15 us of Python less)."""
    if len(calls) == 1 and calls[0].key is None:
        return (yield from _alone(conn, calls[0]))
    pgconn = conn.pgconn
    pgconn.enter_pipeline_mode()
    try:
        for call in calls:
            call.send(pgconn)
        pgconn.pipeline_sync()
        yield from send(pgconn)
        replies: list[Any] = []
        errors_seen: list[Any] = []
        for call in calls:
            for _ in range(2 if call.key is not None else 1):
                res = _one((yield from fetch_many(pgconn)))
                if res.status == _FATAL:
                    errors_seen.append(res)
            replies.append(res)
        # Then the Sync's reply, after the commit's error if the commit failed.
        for _ in range(3):
            got = yield from fetch_many(pgconn)
            errors_seen.extend(res for res in got if res.status == _FATAL)
            if got and got[-1].status == _SYNCED:
                break
        else:
            raise psycopg.OperationalError("durably: no reply to the end of a pipeline")
    except BaseException:
        _abandon(pgconn)
        raise
    pgconn.exit_pipeline_mode()
    if errors_seen:
        raise errors.error_from_result(errors_seen[0], encoding=conn.info.encoding)
    session = _sessions[conn]
    for call in calls:
        if call.key is not None:
            session.prepared[call.key] = call.name  # type: ignore[assignment]
    return replies


def _alone(conn: Any, call: _Call) -> Gen:
    """One statement, outside a pipeline: its result."""
    pgconn = conn.pgconn
    try:
        call.send(pgconn)
        results = yield from execute(pgconn)
    except BaseException:
        _abandon(pgconn)
        raise
    res = results[-1]
    if res.status == _FATAL:
        raise errors.error_from_result(res, encoding=conn.info.encoding)
    return [res]


def _abandon(pgconn: Any) -> None:
    """Interrupted with replies unread (a broken link, a cancelled task): the connection
    is closed, so that its owner replaces it, never reusing one whose next reply would
    answer the wrong statement."""
    with contextlib.suppress(Exception):
        pgconn.finish()


def _calls(conn: Any, statements: Sequence[Statement]) -> list[_Call]:
    session = _sessions.get(conn)
    if session is None:
        session = _sessions[conn] = _Session(conn)
    return [_Call(session, st) for st in statements]


def _one(results: list[Any]) -> Any:
    """The one result a statement of a pipeline has (or a lost link, said so)."""
    if len(results) != 1:
        raise psycopg.OperationalError(
            f"durably: {len(results)} results for one statement of a pipeline"
        )
    return results[0]


def _outcomes(calls: list[_Call], replies: list[Any]) -> list[Outcome]:
    return [Outcome(call.read(res)) for call, res in zip(calls, replies, strict=True)]


def run_sync(conn: psycopg.Connection[Any], statements: Sequence[Statement]) -> list[Outcome]:
    """Run ``statements`` on ``conn`` (autocommit) as one transaction: committed when
    this returns, or not at all when it raises a database error."""
    with conn.lock:
        for attempt in (0, 1):
            calls = _calls(conn, statements)
            try:
                return _outcomes(calls, conn.wait(_exchange(conn, calls)))
            except errors.InvalidSqlStatementName:
                # The server forgot what was prepared here (DISCARD ALL, DEALLOCATE): it
                # ran nothing; prepared again, once.
                if attempt:
                    raise
                _sessions.pop(conn, None)
    raise AssertionError("unreachable")  # pragma: no cover


async def run_async(
    conn: psycopg.AsyncConnection[Any], statements: Sequence[Statement]
) -> list[Outcome]:
    """Async twin of run_sync."""
    async with conn.lock:
        for attempt in (0, 1):
            calls = _calls(conn, statements)
            try:
                return _outcomes(calls, await conn.wait(_exchange(conn, calls)))
            except errors.InvalidSqlStatementName:
                if attempt:
                    raise
                _sessions.pop(conn, None)
    raise AssertionError("unreachable")  # pragma: no cover
