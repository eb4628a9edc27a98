"""The store hands back named rows built by column name: a column added to or renamed in
a statement without its row type fails at the store, loudly, instead of shifting what
every reader unpacks.

The first tests show the mechanism on made-up statements; the last ones hold every
statement of the .sql files to it, against the real schema: the columns each produces
are its row type's fields, by name and in order, and a statement that produces columns
has a row type (or its rows would never reach a reader).
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

import durably
from durably.store import sqlfile, statements
from durably.store.app_database import app_statements
from durably.store.database import AsyncDatabase, Database
from durably.store.rows import ROW_TYPES, Created, Outcome
from durably.store.sqlfile import Query
from durably.store.statements import Statement, bound

VOID = 2278  # the type of a column that only calls a function, like pg_advisory_xact_lock()


def query(text: str, name: str = "test") -> Query:
    made = Query(text)
    made.name = name
    return made


# ------------------------------------------------------------------ the mechanism


def test_rows_come_back_by_name(pg_url: str, schema: str) -> None:
    db = Database(pg_url, schema)
    try:
        rows = db.run(
            Statement(query("SELECT now() AS deadline, 7 AS epoch"), {}, "rows", row=Created)
        )
        assert rows[0].epoch == 7 and rows[0].deadline is not None  # order does not matter
    finally:
        db.close()


def test_rows_come_back_by_name_from_every_way_of_running(pg_url: str, schema: str) -> None:
    """Direct, in a transaction, group-committed, retried: sync and async alike."""
    made = Statement(query("SELECT now() AS deadline, 7 AS epoch"), {}, "rows", row=Created)
    db = Database(pg_url, schema)
    try:
        sync_results = [
            db.run(made), db.run_transaction([made, made]), db.write(made), db.retry([made])
        ]  # fmt: skip
    finally:
        db.close()

    async def run_async() -> list[Any]:
        adb = AsyncDatabase(pg_url, schema)
        await adb.open()
        try:
            return [
                await adb.run(made), await adb.run_transaction([made, made]),
                await adb.write(made), await adb.retry([made]),
            ]  # fmt: skip
        finally:
            await adb.close()

    for rows in sync_results + asyncio.run(run_async()):
        assert isinstance(rows[0], Created) and rows[0].epoch == 7


def test_an_added_column_fails_at_the_store(pg_url: str, schema: str) -> None:
    db = Database(pg_url, schema)
    try:
        extra = Statement(
            query("SELECT 1 AS epoch, now() AS deadline, 3 AS surprise"), {}, "rows", row=Created
        )
        with pytest.raises(TypeError, match="surprise"):
            db.run(extra)
    finally:
        db.close()


def test_a_renamed_column_fails_at_the_store(pg_url: str, schema: str) -> None:
    db = Database(pg_url, schema)
    try:
        renamed = Statement(
            query("SELECT 'wf' AS workflow_name, 'SUCCESS' AS status, NULL AS output, "
                  "NULL AS error, 0 AS recovery_attempts"),
            {},
            "rows",
            row=Outcome,
        )  # fmt: skip
        with pytest.raises(TypeError, match="workflow_name"):
            db.run(renamed)
    finally:
        db.close()


def test_a_missing_column_fails_at_the_store(pg_url: str, schema: str) -> None:
    db = Database(pg_url, schema)
    try:
        short = Statement(query("SELECT 1 AS epoch"), {}, "rows", row=Created)
        with pytest.raises(TypeError, match="deadline"):
            db.run(short)
    finally:
        db.close()


def test_a_statement_returns_what_its_row_type_says() -> None:
    """``bound`` takes the row type from ROW_TYPES by the statement's name: with one, the
    statement returns rows of it; without, its rowcount."""
    with_rows = bound(query("SELECT 1", name="get_outcome"), {})
    assert (with_rows.returns, with_rows.row) == ("rows", Outcome)
    without = bound(query("SELECT 1", name="remove_executor"), {})
    assert (without.returns, without.row) == ("rowcount", None)


# ------------------------------------------------------------------ every statement


def _columns(conn: psycopg.Connection[Any], name: str, text: str) -> list[tuple[str, int]]:
    """The (name, type) of each column the statement produces, as the server describes
    it once prepared: nothing runs, so writes write nothing."""
    placeholders = {found: None for found in re.findall(r"%\((\w+)\)s", text)}
    converted = PostgresQuery(Transformer(conn))
    converted.convert(text, placeholders)
    prepared = f"durably_check_{name}".encode()
    result = conn.pgconn.prepare(prepared, converted.query)
    assert result.status == pq.ExecStatus.COMMAND_OK, (
        f"statement {name!r} does not prepare: {result.get_error_message()}"
    )
    described = conn.pgconn.describe_prepared(prepared)
    assert described.status == pq.ExecStatus.COMMAND_OK, described.get_error_message()
    return [
        ((described.fname(i) or b"").decode(), described.ftype(i)) for i in range(described.nfields)
    ]


@pytest.fixture
def described(app: durably.App, schema: str, db: psycopg.Connection[Any]) -> dict[str, Any]:
    """Every statement of the .sql files, described on the schema a launched App made
    (with the table transaction steps keep in another database, made there too)."""
    for setup in app_statements(app.engine.db.url, schema).setup():
        db.execute(setup.sql, setup.params)
    columns = {}
    for name in sqlfile.names():
        # list_workflows has an order, and its filters by name and queue are fragments
        text = sqlfile.statement(
            name, schema, order="ASC", lead="", name_is="true", queue_is="true"
        )
        columns[name] = _columns(db, name, text)
    return columns


def test_every_row_type_is_its_statements_columns(described: dict[str, Any]) -> None:
    """The columns a statement produces are its row type's fields, by name and order."""
    wrong = []
    for name, row in sorted(ROW_TYPES.items()):
        produced = [column for column, _ in described[name]]
        if produced != list(row._fields):
            wrong.append(f"{name}: the query gives {produced}, {row.__name__} has {row._fields}")
    assert not wrong, "row types that do not match their statements:\n" + "\n".join(wrong)


def test_every_statement_producing_columns_has_a_row_type(described: dict[str, Any]) -> None:
    """Rows are read by name, so a statement whose result has columns must name its row
    type in ROW_TYPES (without one it would run for its rowcount)."""
    missing = [
        f"{name}: {[column for column, _ in columns]}"
        for name, columns in sorted(described.items())
        if name not in ROW_TYPES and any(kind != VOID for _, kind in columns)
    ]
    assert not missing, "statements with columns but no row type in store/rows.py:\n" + (
        "\n".join(missing)
    )


def test_every_row_type_names_a_statement() -> None:
    assert set(ROW_TYPES) <= set(sqlfile.names()), set(ROW_TYPES) - set(sqlfile.names())


def test_statements_are_bound_by_name() -> None:
    """The statement builders make every Statement through ``bound``, which takes its row
    type from ROW_TYPES: one made directly could hand back rows no type was declared for."""
    store = Path(statements.__file__).parent
    direct = []
    for path in sorted(store.glob("*statements.py")):
        tree = ast.parse(path.read_text())
        allowed = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef) and function.name == "bound"
            for node in ast.walk(function)
        }
        direct += [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "Statement"
            and id(node) not in allowed
        ]
    assert not direct, f"Statements made without bound(): {direct}"
