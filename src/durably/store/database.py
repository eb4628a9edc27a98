"""Connection pools and the two ways to run statements: directly, or group-committed.

``Database`` serves threads, ``AsyncDatabase`` serves the tasks of one event loop;
both run the same ``Statement`` objects, so no query logic exists twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg_pool

from durably.errors import DatabaseUnavailable
from durably.store.committer import (
    AsyncCommitter,
    Result,
    SyncCommitter,
    run_async,
    run_sync,
    run_transaction_async,
    run_transaction_sync,
)
from durably.store.migrate import migrate
from durably.store.queue_statements import QueueStatements
from durably.store.statements import Statement, Statements

_CONNECT_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0}


class Database:
    """A thread-safe pool of connections to one schema of one database."""

    def __init__(self, url: str, schema: str, *, max_size: int = 16) -> None:
        self.url = url
        self.schema = schema
        self.statements = Statements(schema)
        self.queue_statements = QueueStatements(schema, self.statements.channel)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                migrate(conn, schema)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {_redact(url)}: {exc}".strip()
            ) from exc
        self.pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs=_CONNECT_KWARGS,
            open=True,
            name="durably",
        )
        self._committer = SyncCommitter(lambda: psycopg.connect(url, **_CONNECT_KWARGS))

    def run(self, statement: Statement) -> Result:
        """Run one statement in its own transaction."""
        with self.pool.connection() as conn:
            return run_sync(conn, statement)

    def write(self, statement: Statement) -> Result:
        """Run a write, sharing its commit with concurrent writes (group commit)."""
        return self._committer.submit(statement)

    def run_transaction(self, statements: Sequence[Statement]) -> Result:
        """Run statements in one transaction (one round trip); return the last's result."""
        with self.pool.connection() as conn:
            return run_transaction_sync(conn, statements)

    def close(self) -> None:
        self._committer.close()
        self.pool.close()


class AsyncDatabase:
    """The async twin of ``Database``, bound to the event loop that opened it."""

    def __init__(self, url: str, schema: str, *, max_size: int = 8) -> None:
        self.url = url
        self.schema = schema
        self.statements = Statements(schema)
        self.pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs=_CONNECT_KWARGS,
            open=False,
            name="durably-async",
        )
        self._committer = AsyncCommitter(
            lambda: psycopg.AsyncConnection.connect(url, **_CONNECT_KWARGS)
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def run(self, statement: Statement) -> Result:
        """Run one statement in its own transaction."""
        async with self.pool.connection() as conn:
            return await run_async(conn, statement)

    async def write(self, statement: Statement) -> Result:
        """Run a write, sharing its commit with concurrent writes (group commit)."""
        return await self._committer.submit(statement)

    async def run_transaction(self, statements: Sequence[Statement]) -> Result:
        """Async twin of Database.run_transaction."""
        async with self.pool.connection() as conn:
            return await run_transaction_async(conn, statements)

    async def close(self) -> None:
        await self._committer.close()
        await self.pool.close()


def _redact(url: str) -> str:
    """A URL fit for an error message: the password is never shown."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable URL>"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
