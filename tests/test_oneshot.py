"""Statements run without cursors (store/oneshot.py) give what a cursor gives, commit a
batch whole or not at all, and survive the server forgetting what was prepared."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, NamedTuple

import psycopg
import pytest
from psycopg import sql

from durably.store import oneshot
from durably.store.committer import _row_factory
from durably.store.sqlfile import Query
from durably.store.statements import Statement


class Mixed(NamedTuple):
    n: int
    f: float
    t: str | None
    at: dt.datetime
    doc: Any
    names: list[str]
    yes: bool


def query(text: str, name: str = "test") -> Query:
    made = Query(text)
    made.name = name
    return made


MIXED = query(
    "SELECT %(n)s::int AS n, %(f)s::float8 AS f, %(t)s::text AS t, "
    "%(at)s::timestamptz AS at, %(doc)s::jsonb AS doc, %(names)s::text[] AS names, "
    "%(yes)s::bool AS yes"
)
PARAMS = {
    "n": 7,
    "f": 0.5,
    "t": None,
    "at": dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC),
    "doc": '{"a": [1, "x", null]}',
    "names": ["a", "b c", 'd"e'],
    "yes": True,
}


@pytest.fixture
def conn(pg_url: str, schema: str) -> Any:
    with psycopg.connect(pg_url, autocommit=True, prepare_threshold=0) as made:
        made.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        made.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        made.execute("CREATE TABLE t (id int PRIMARY KEY)")
        yield made


def through_a_cursor(conn: Any, st: Statement) -> Any:
    cursor = conn.cursor(row_factory=_row_factory(st.row))
    cursor.execute(st.sql, st.params, prepare=st.prepare)
    return cursor.fetchall() if st.returns == "rows" else cursor.rowcount


@pytest.mark.parametrize("prepare", [True, False])
@pytest.mark.parametrize("row", [Mixed, None])
def test_values_come_back_as_through_a_cursor(conn: Any, prepare: bool, row: Any) -> None:
    st = Statement(MIXED, PARAMS, "rows", row=row, prepare=prepare)
    for _ in range(2):  # prepared by the first, reused by the second
        [outcome] = oneshot.run_sync(conn, [st])
        assert outcome.result == through_a_cursor(conn, st)
    first = outcome.result[0]
    assert (first.names if row else first[5]) == ["a", "b c", 'd"e']


def test_a_batch_of_different_rows_reads_each_as_its_own(conn: Any) -> None:
    """The statements of a batch share the connection's dumpers and loaders: each result
    is still read with the types of its own columns."""
    mixed = Statement(MIXED, PARAMS, "rows", row=Mixed)
    texts = Statement(
        query("SELECT %(a)s::text AS a, %(b)s::int8 AS b"), {"a": "7", "b": 7}, "rows"
    )
    insert = Statement(query("INSERT INTO t VALUES (%(i)s)"), {"i": 9})
    for _ in range(2):  # prepared in the batch, then reused
        got = [o.result for o in oneshot.run_sync(conn, [texts, mixed, texts, insert])]
        assert got[0] == got[2] == [("7", 7)]
        assert got[1] == through_a_cursor(conn, mixed)
        assert got[3] == 1
        conn.execute("DELETE FROM t")


def test_a_rowcount_as_through_a_cursor(conn: Any) -> None:
    insert = Statement(query("INSERT INTO t SELECT generate_series(1, %(n)s)"), {"n": 3})
    [outcome] = oneshot.run_sync(conn, [insert])
    assert outcome.result == 3
    delete = Statement(query("DELETE FROM t WHERE id > %(n)s"), {"n": 1})
    assert oneshot.run_sync(conn, [delete])[0].result == 2


def test_a_batch_commits_whole_or_not_at_all(conn: Any) -> None:
    def insert(i: int) -> Statement:
        return Statement(query("INSERT INTO t VALUES (%(i)s)"), {"i": i})

    assert [o.result for o in oneshot.run_sync(conn, [insert(1), insert(2)])] == [1, 1]
    # The second fails (a duplicate key): the first and third of the batch are undone.
    with pytest.raises(psycopg.errors.UniqueViolation):
        oneshot.run_sync(conn, [insert(3), insert(1), insert(4)])
    assert conn.execute("SELECT array_agg(id ORDER BY id) FROM t").fetchone()[0] == [1, 2]
    # The connection is as good as before: the next batch runs.
    oneshot.run_sync(conn, [insert(5)])
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_what_the_server_forgot_is_prepared_again(conn: Any) -> None:
    st = Statement(MIXED, PARAMS, "rows", row=Mixed)
    oneshot.run_sync(conn, [st])
    conn.execute("DEALLOCATE ALL")  # the server forgets; this module does not know
    assert oneshot.run_sync(conn, [st])[0].result == through_a_cursor(conn, st)


def test_an_error_in_preparing_leaves_the_connection_usable(conn: Any) -> None:
    broken = Statement(query("SELECT nosuchcolumn FROM t"), {}, "rows")
    for _ in range(2):
        with pytest.raises(psycopg.errors.UndefinedColumn):
            oneshot.run_sync(conn, [broken])
    assert oneshot.run_sync(conn, [Statement(MIXED, PARAMS, "rows")])[0].result


def test_a_broken_link_closes_the_connection(pg_url: str, conn: Any) -> None:
    pid = conn.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        oneshot.run_sync(conn, [Statement(MIXED, PARAMS, "rows")])
    assert conn.closed  # its owner sees it closed and replaces it


def test_async_twin(pg_url: str, schema: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as made:
            st = Statement(MIXED, PARAMS, "rows", row=Mixed)
            for _ in range(2):
                outcomes = await oneshot.run_async(made, [st, st])
                assert outcomes[-1].result[0].names == ["a", "b c", 'd"e']
            await made.execute("DEALLOCATE ALL")
            [first, second] = await oneshot.run_async(made, [st, st])
            assert first.result == second.result

    asyncio.run(run())
