"""Another database that transaction steps write to (``database=``): its connections and
durably's one table there, the checkpoints of the transactions committed in it.

A transaction on the app's own database commits with its operation row. On another
database that row cannot be in the same transaction, so the transaction writes its
checkpoint into ``<schema>.transaction_outputs`` of that database instead; the operation
row in the app's database follows it (``execution.transactions``).
"""

from __future__ import annotations

from typing import Any

import psycopg

from durably.store import sqlfile
from durably.store.database import Database
from durably.store.dialect import Dialect, dialect_for
from durably.store.statements import Statement, bound


class AppStatements:
    """The statements durably runs on another database, rendered for one schema."""

    def __init__(self, schema: str, dialect: Dialect) -> None:
        self.schema = schema
        names = (
            "app_database_lock", "app_database_schema", "app_database_table",
            "record_transaction", "transaction_output",
        )  # fmt: skip
        self._sql = {name: sqlfile.statement(name, schema, dialect) for name in names}

    def setup(self) -> list[Statement]:
        """Creates durably's table there if missing (run in one transaction)."""
        return [
            bound(self._sql["app_database_lock"], {"key": f"durably-app:{self.schema}"}),
            bound(self._sql["app_database_schema"], {}),
            bound(self._sql["app_database_table"], {}),
        ]

    def record_transaction(self, workflow_id: str, step: int, output: str) -> Statement:
        return bound(
            self._sql["record_transaction"],
            {"workflow_id": workflow_id, "step": step, "output": output},
        )

    def transaction_output(self, workflow_id: str, step: int) -> Statement:
        return bound(self._sql["transaction_output"], {"workflow_id": workflow_id, "step": step})


def app_statements(url: str, schema: str) -> AppStatements:
    """The statements for the database at ``url`` (refused at once if it is no PostgreSQL
    URL, as for the app's own)."""
    return AppStatements(schema, dialect_for(url))


class AppDatabase(Database):
    """A pool on another database; on first connection it creates durably's checkpoint
    table there (and nothing else: the workflows stay in the app's database)."""

    def __init__(self, url: str, schema: str, *, max_size: int = 8) -> None:
        self.app_statements = app_statements(url, schema)
        super().__init__(url, schema, max_size=max_size)

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            for statement in self.app_statements.setup():
                conn.execute(statement.sql, statement.params)
