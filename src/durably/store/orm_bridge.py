"""A transaction step's connection as an ORM sees it: its commit and rollback are a
savepoint's, so the ORM's work commits (or not) with the step's own transaction."""

from __future__ import annotations

from typing import Any

import psycopg

from durably.errors import ConfigurationError
from durably.store import sqlfile

_sql = sqlfile.schemaless


class BorrowedConnection:
    """Stands for a psycopg connection durably owns, handed to SQLAlchemy as its DBAPI
    connection. ``commit`` releases the current savepoint and opens the next one,
    ``rollback`` rolls back to it, ``close`` leaves the connection to durably; everything
    else is the connection's own."""

    def __init__(self, conn: Any) -> None:
        if not isinstance(conn, psycopg.Connection):
            raise ConfigurationError(
                f"durably.orm.session() takes the psycopg.Connection a transaction step "
                f"receives as its first argument, got {type(conn).__name__}"
            )
        self._conn = conn
        conn.execute(_sql("orm_savepoint"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def commit(self) -> None:
        self._conn.execute(_sql("orm_release"))
        self._conn.execute(_sql("orm_savepoint"))

    def rollback(self) -> None:
        self._conn.execute(_sql("orm_rollback"))

    def close(self) -> None:
        """The connection is durably's: it stays open for the checkpoint and COMMIT."""
