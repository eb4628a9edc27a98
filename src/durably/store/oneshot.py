"""One statement on an autocommit connection without a cursor: psycopg's own dumpers and
loaders, about half the Python of ``cursor.execute`` (a step is one such statement).

Each checkpoint, finish and enqueue that commits alone runs here. A psycopg cursor costs
about 70 microseconds of Python for one prepared statement, of which only the dumping,
the round trip and the loading are needed: this does those, with the same adapters, so
values go in and come out exactly as through a cursor. Statements run prepared under
names of this module's own (``_durably_N``), one set per connection.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import Transformer
from psycopg.generators import execute as _execute_gen

from durably.store.statements import Statement

try:  # psycopg's query conversion (named placeholders, parameter dumping)
    from psycopg._queries import PostgresQuery

    AVAILABLE = True
except ImportError:  # pragma: no cover - a psycopg that moved it: cursors, as before
    AVAILABLE = False

# Prepared statement names per connection: (query, parameter types) -> name.
_prepared: weakref.WeakKeyDictionary[Any, dict[tuple[bytes, tuple[int, ...]], bytes]] = (
    weakref.WeakKeyDictionary()
)

# Names are never reused on a connection, even after its set was dropped.
_numbers = itertools.count()

# The server forgot a statement prepared here (DISCARD ALL or DEALLOCATE on this
# connection): prepared again, once.
_FORGOTTEN = errors.InvalidSqlStatementName


class Outcome:
    """What a statement returned: its rows (as the statement's row type) or rowcount."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result


class _Call:
    """One run of a statement: its parameters dumped, the name it runs prepared under."""

    __slots__ = ("key", "name", "query", "tx")

    def __init__(self, conn: Any, st: Statement) -> None:
        self.tx = Transformer(conn)
        self.query = PostgresQuery(self.tx)
        self.query.convert(st.sql, st.params)
        self.name: bytes | None = None  # None: unnamed, planned each time
        self.key: tuple[bytes, tuple[int, ...]] | None = None  # set: prepare it first
        if st.prepare:
            names = _prepared.setdefault(conn, {})
            key = (self.query.query, tuple(self.query.types or ()))
            self.name = names.get(key)
            if self.name is None:
                self.name = f"_durably_{next(_numbers)}".encode()
                self.key = key

    def send_prepare(self, pgconn: Any) -> None:
        pgconn.send_prepare(self.name, self.query.query, param_types=self.query.types)

    def prepared(self, conn: Any, res: Any, encoding: str) -> None:
        _check(res, encoding)
        assert self.key is not None and self.name is not None
        _prepared.setdefault(conn, {})[self.key] = self.name

    def send(self, pgconn: Any) -> None:
        query = self.query
        if self.name is None:
            pgconn.send_query_params(
                query.query, query.params, param_formats=query.formats, param_types=query.types
            )
        else:
            pgconn.send_query_prepared(self.name, query.params, param_formats=query.formats)

    def read(self, res: Any, st: Statement, encoding: str) -> Any:
        """The statement's result, as a cursor would give it."""
        _check(res, encoding)
        if st.returns != "rows":
            count = res.command_tuples
            return -1 if count is None else count
        self.tx.set_pgresult(res)
        make: Callable[[Any], Any]
        if st.row is None:
            make = tuple
        else:
            row = st.row
            names = [res.fname(i).decode(encoding) for i in range(res.nfields)]

            def make(values: Any) -> Any:
                return row(**dict(zip(names, values, strict=True)))

        return self.tx.load_rows(0, res.ntuples, make)


def _check(res: Any, encoding: str) -> None:
    if res.status == pq.ExecStatus.FATAL_ERROR:
        raise errors.error_from_result(res, encoding=encoding)


def run_sync(conn: psycopg.Connection[Any], st: Statement) -> Outcome:
    """Run ``st`` alone on ``conn`` (autocommit): it committed when this returns."""
    encoding = conn.info.encoding
    with conn.lock:
        for attempt in (0, 1):
            call = _Call(conn, st)
            try:
                if call.key is not None:
                    call.send_prepare(conn.pgconn)
                    call.prepared(conn, conn.wait(_execute_gen(conn.pgconn))[-1], encoding)
                call.send(conn.pgconn)
                return Outcome(call.read(conn.wait(_execute_gen(conn.pgconn))[-1], st, encoding))
            except _FORGOTTEN:
                if attempt:
                    raise
                _prepared.pop(conn, None)
    raise AssertionError("unreachable")  # pragma: no cover


async def run_async(conn: psycopg.AsyncConnection[Any], st: Statement) -> Outcome:
    """Async twin of run_sync."""
    encoding = conn.info.encoding
    async with conn.lock:
        for attempt in (0, 1):
            call = _Call(conn, st)
            try:
                if call.key is not None:
                    call.send_prepare(conn.pgconn)
                    results = await conn.wait(_execute_gen(conn.pgconn))
                    call.prepared(conn, results[-1], encoding)
                call.send(conn.pgconn)
                results = await conn.wait(_execute_gen(conn.pgconn))
                return Outcome(call.read(results[-1], st, encoding))
            except _FORGOTTEN:
                if attempt:
                    raise
                _prepared.pop(conn, None)
    raise AssertionError("unreachable")  # pragma: no cover
