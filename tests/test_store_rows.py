"""The store hands back named rows built by column name: a column added to or renamed in
a statement without its row type fails at the store, loudly, instead of shifting what
every reader unpacks."""

from __future__ import annotations

import pytest

from durably.store.database import Database
from durably.store.rows import Created, Outcome
from durably.store.sqlfile import Query
from durably.store.statements import Statement


def query(text: str) -> Query:
    made = Query(text)
    made.name = "test"
    return made


def test_rows_come_back_by_name(pg_url: str, schema: str) -> None:
    db = Database(pg_url, schema)
    try:
        rows = db.run(
            Statement(query("SELECT now() AS deadline, 7 AS epoch"), {}, "rows", row=Created)
        )
        assert rows[0].epoch == 7 and rows[0].deadline is not None  # order does not matter
    finally:
        db.close()


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
