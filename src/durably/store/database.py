"""Connection pools and the ways to run statements: directly, group-committed, or again
after a broken connection left their outcome unknown.

``Database`` serves threads, ``AsyncDatabase`` serves the tasks of one event loop;
both run the same ``Statement`` objects, so no query logic exists twice. Driver errors
that mean "the connection broke" leave this module as ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg_pool

from durably.errors import ConnectionLost, DatabaseUnavailable
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
from durably.store.outage import RETRY_BUDGET, Outage, delays
from durably.store.queue_statements import QueueStatements
from durably.store.statements import Statement, Statements

_CONNECT_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0}
# A retry connects afresh; during an outage that must fail fast, not hang.
_RETRY_CONNECT_TIMEOUT = 5


def _lost(exc: psycopg.OperationalError) -> ConnectionLost:
    return ConnectionLost(f"the database connection failed: {str(exc).strip() or exc!r}")


def _gave_up(budget: float, last: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database did not answer within {budget:.0f} s ({last}); unfinished workflows "
        f"are left unrecorded and will be recovered"
    )


class Database:
    """A thread-safe pool of connections to one schema of one database."""

    def __init__(self, url: str, schema: str, *, max_size: int = 16) -> None:
        self.url = url
        self.schema = schema
        self.statements = Statements(schema)
        self.queue_statements = QueueStatements(schema, self.statements.channel)
        self.outage = Outage()
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                migrate(conn, schema)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {_redact(url)}: {exc}".strip()
            ) from exc
        self._max_size = max_size
        self._lock = threading.Lock()
        self._pool_broken = False
        self._recoveries_seen = self.outage.recoveries
        self.pool = self._new_pool()
        self._committer = SyncCommitter(lambda: psycopg.connect(url, **_CONNECT_KWARGS))

    def _new_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        return psycopg_pool.ConnectionPool(
            self.url,
            min_size=1,
            max_size=self._max_size,
            kwargs=_CONNECT_KWARGS,
            # No check as connections are handed out: psycopg-pool's check loop waits,
            # with a growing back-off, up to the pool timeout while the server is down.
            # A dead connection fails its call at once instead; the pool is then marked
            # broken, calls go to fresh connections, and the pool is replaced as soon
            # as the database answers (``_heal``).
            open=True,
            name="durably",
        )

    def _suspect(self) -> bool:
        """True when the pool is set aside: after a broken connection here, or after an
        outage seen by another user of the same account (this pool's connections may
        have died unnoticed)."""
        if self.outage.recoveries != self._recoveries_seen:
            self._recoveries_seen = self.outage.recoveries
            self._pool_broken = True
            self._committer.invalidate()
        return self._pool_broken

    def _failed(self, exc: psycopg.OperationalError) -> ConnectionLost:
        """A call met a broken connection: the pool is set aside until the database
        answers, and the outage is counted (logged once)."""
        self._pool_broken = True
        self.outage.failed(exc)
        return _lost(exc)

    def run(self, statement: Statement) -> Result:
        """Run one statement in its own transaction."""
        if self._suspect():
            return self.retry((statement,))
        try:
            with self.pool.connection() as conn:
                return run_sync(conn, statement)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc

    def write(self, statement: Statement) -> Result:
        """Run a write, sharing its commit with concurrent writes (group commit)."""
        self._suspect()
        try:
            return self._committer.submit(statement)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc

    def run_transaction(self, statements: Sequence[Statement]) -> Result:
        """Run statements in one transaction (one round trip); return the last's result."""
        if self._suspect():
            return self.retry(statements)
        try:
            with self.pool.connection() as conn:
                return run_transaction_sync(conn, statements)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc

    def settle(
        self,
        statements: Sequence[Statement],
        first: ConnectionLost,
        budget: float = RETRY_BUDGET,
    ) -> Result:
        """After ``first`` left the outcome of ``statements`` unknown: retry them in their
        settling form, with capped back-off, until the database answers or ``budget``
        seconds pass (then DatabaseUnavailable)."""
        last: Exception = first
        for pause in delays(budget):
            time.sleep(pause)
            try:
                return self.retry(statements)
            except ConnectionLost as exc:
                last = exc
        raise _gave_up(budget, last) from last

    def run_settled(self, statement: Statement, budget: float = RETRY_BUDGET) -> Result:
        """``run``, settled through an outage of up to ``budget`` seconds."""
        try:
            return self.run(statement)
        except ConnectionLost as exc:
            return self.settle((statement,), exc, budget)

    def retry(self, statements: Sequence[Statement]) -> Result:
        """Run again, in one transaction on a fresh connection, statements whose outcome
        is unknown, each in its settling form (``Statement.retried``). Also how every
        call runs while the pool is broken: during an outage it fails at once."""
        try:
            with psycopg.connect(
                self.url, connect_timeout=_RETRY_CONNECT_TIMEOUT, **_CONNECT_KWARGS
            ) as conn:
                settling = [st.retried() for st in statements]
                if len(settling) == 1:
                    result = run_sync(conn, settling[0])
                else:
                    result = run_transaction_sync(conn, settling)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc
        self._heal()
        return result

    def _heal(self) -> None:
        """The database answers again: end the outage, replace a pool that met a broken
        connection (so no caller waits behind its reconnection back-off), and have the
        committer connect afresh."""
        self.outage.succeeded()
        self._recoveries_seen = self.outage.recoveries
        with self._lock:
            if not self._pool_broken:
                return
            self._pool_broken = False
            self._committer.invalidate()
            old, self.pool = self.pool, self._new_pool()
        # Closing waits for the old pool's workers; nobody needs to wait for that.
        threading.Thread(target=old.close, name="durably-pool-close", daemon=True).start()

    def close(self) -> None:
        self._committer.close()
        self.pool.close()


class AsyncDatabase:
    """The async twin of ``Database``, bound to the event loop that opened it."""

    def __init__(
        self, url: str, schema: str, *, max_size: int = 8, outage: Outage | None = None
    ) -> None:
        self.url = url
        self.schema = schema
        self.statements = Statements(schema)
        self.outage = outage if outage is not None else Outage()
        self._max_size = max_size
        self._pool_broken = False
        self._recoveries_seen = self.outage.recoveries
        self._closing: set[asyncio.Task[None]] = set()
        self.pool = self._new_pool()
        self._committer = AsyncCommitter(
            lambda: psycopg.AsyncConnection.connect(url, **_CONNECT_KWARGS)
        )

    def _new_pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        return psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._max_size,
            kwargs=_CONNECT_KWARGS,
            open=False,  # no check: see Database._new_pool
            name="durably-async",
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    def _suspect(self) -> bool:
        """Async twin of Database._suspect."""
        if self.outage.recoveries != self._recoveries_seen:
            self._recoveries_seen = self.outage.recoveries
            self._pool_broken = True
            self._committer.invalidate()
        return self._pool_broken

    def _failed(self, exc: psycopg.OperationalError) -> ConnectionLost:
        """Async twin of Database._failed."""
        self._pool_broken = True
        self.outage.failed(exc)
        return _lost(exc)

    async def run(self, statement: Statement) -> Result:
        """Run one statement in its own transaction."""
        if self._suspect():
            return await self.retry((statement,))
        try:
            async with self.pool.connection() as conn:
                return await run_async(conn, statement)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc

    async def write(self, statement: Statement) -> Result:
        """Run a write, sharing its commit with concurrent writes (group commit)."""
        self._suspect()
        try:
            return await self._committer.submit(statement)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc

    async def run_transaction(self, statements: Sequence[Statement]) -> Result:
        """Async twin of Database.run_transaction."""
        if self._suspect():
            return await self.retry(statements)
        try:
            async with self.pool.connection() as conn:
                return await run_transaction_async(conn, statements)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc

    async def settle(
        self,
        statements: Sequence[Statement],
        first: ConnectionLost,
        budget: float = RETRY_BUDGET,
    ) -> Result:
        """Async twin of Database.settle."""
        last: Exception = first
        for pause in delays(budget):
            await asyncio.sleep(pause)
            try:
                return await self.retry(statements)
            except ConnectionLost as exc:
                last = exc
        raise _gave_up(budget, last) from last

    async def retry(self, statements: Sequence[Statement]) -> Result:
        """Async twin of Database.retry."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, connect_timeout=_RETRY_CONNECT_TIMEOUT, **_CONNECT_KWARGS
            )
            async with conn:
                settling = [st.retried() for st in statements]
                if len(settling) == 1:
                    result = await run_async(conn, settling[0])
                else:
                    result = await run_transaction_async(conn, settling)
        except psycopg.OperationalError as exc:
            raise self._failed(exc) from exc
        await self._heal()
        return result

    async def _heal(self) -> None:
        """Async twin of Database._heal (one event loop: no lock needed)."""
        self.outage.succeeded()
        self._recoveries_seen = self.outage.recoveries
        if not self._pool_broken:
            return
        self._pool_broken = False
        self._committer.invalidate()
        old, self.pool = self.pool, self._new_pool()
        await self.pool.open(wait=False)
        closing = asyncio.get_running_loop().create_task(old.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

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
