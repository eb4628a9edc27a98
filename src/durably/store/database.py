"""Connection pools, and the ways to run statements on them.

Statements run directly, group-committed, or again after a broken connection left their
outcome unknown. ``Database`` serves threads, ``AsyncDatabase`` serves the tasks of one
event loop; both run the same ``Statement`` objects, so no query logic exists twice, and
both keep their account of a broken pool in ``PoolState``, so that bookkeeping is
written once. Driver errors that mean "the connection broke" leave this module as
``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, NoReturn, TypeVar

import psycopg
import psycopg_pool

from durably.errors import (
    ConfigurationError,
    ConnectionLost,
    DatabaseLimitExceeded,
    DatabaseUnavailable,
)
from durably.store.committer import AsyncCommitter, Result, SyncCommitter, run_async, run_sync
from durably.store.dialect import dialect_for
from durably.store.migrate import migrate, unapplied
from durably.store.outage import RETRY_BUDGET, Outage, delays
from durably.store.queue_statements import QueueStatements
from durably.store.redaction import redact, scrub
from durably.store.statements import Statement, Statements
from durably.store.transact import Checkpoint, Transacted, transact_async, transact_sync

# A retry connects afresh; during an outage that must fail fast, not hang.
_RETRY_CONNECT_TIMEOUT = 5
#: Seconds a new connection waits for the server unless the URL says otherwise
#: (``?connect_timeout=N``, or ``$PGCONNECT_TIMEOUT``); libpq alone would wait 130 s.
CONNECT_TIMEOUT = 10

P = TypeVar("P", psycopg_pool.ConnectionPool[Any], psycopg_pool.AsyncConnectionPool[Any])
K = TypeVar("K", SyncCommitter, AsyncCommitter)


def _gave_up(budget: float, last: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database did not answer within {budget:.0f} s ({last}); unfinished workflows "
        f"are left unrecorded and will be recovered"
    )


def _beyond_limit(exc: psycopg.Error) -> DatabaseLimitExceeded:
    reason = (exc.diag.message_primary or str(exc)).strip()
    return DatabaseLimitExceeded(
        f"PostgreSQL refused to store this input: {reason} (SQLSTATE {exc.sqlstate}, a "
        f"limit of the server); nothing was written. Shorten the names, keys or values "
        f"involved and try again"
    )


def _settling(statements: Sequence[Statement]) -> list[Statement]:
    """Statements whose outcome is unknown, in the form that settles it (``retried``)."""
    return [st.retried() for st in statements]


class PoolState(Generic[P, K]):
    """What both stores keep besides their connections, and decide without waiting:
    whether the pool can be trusted, the outage account, and when to replace the pool."""

    pool: P
    # Group commit of the running workflows' writes, and a second one for the writes of
    # callers that wait only for their own (``write(..., for_caller=True)``).
    _committer: K
    _callers: K

    def __init__(self, url: str, schema: str, max_size: int, outage: Outage) -> None:
        self.url = url
        self.schema = schema
        # Refuses a URL of another database before anything connects (or prints it).
        self.dialect = dialect_for(url)
        self.statements = Statements(schema, self.dialect)
        self._connect_kwargs = {**self.dialect.connect_kwargs, **connect_timeout(url)}
        self._retry_kwargs = {**self._connect_kwargs, "connect_timeout": _RETRY_CONNECT_TIMEOUT}
        self.outage = outage
        self._max_size = max_size
        self._lock = threading.Lock()
        self._pool_broken = False
        self._recoveries_seen = outage.recoveries
        self.closed = False  # closed for good: every call is refused (``_suspect``)

    def _pool_options(self) -> dict[str, Any]:
        # No check as connections are handed out: psycopg-pool's check loop waits, with a
        # growing back-off, up to the pool timeout while the server is down. A dead
        # connection fails its call at once instead; the pool is then marked broken, calls
        # go to fresh connections, and the pool is replaced as soon as the database
        # answers (``_mended``).
        return {"min_size": 1, "max_size": self._max_size, "kwargs": self._connect_kwargs}

    def _new_pool(self) -> P:
        raise NotImplementedError

    def observe_batches(self, on_batch: Callable[[int], None] | None) -> None:
        """Have group commit tell ``on_batch`` each batch's size (None: stop)."""
        self._committer.on_batch = self._callers.on_batch = on_batch

    def _invalidate_committers(self) -> None:
        self._committer.invalidate()
        self._callers.invalidate()

    def _committer_for(self, for_caller: bool) -> K:
        """Where a write goes. A caller's start or enqueue goes into the running
        workflows' group commit when no batch is in flight there (its connection is the
        one kept warm), else to a group commit of callers' writes on a connection of its
        own. Queued behind the checkpoints of a busy worker, one ``start()`` in a loop
        took 2.6 ms each, and 500 such starts were the whole cost of running them."""
        return self._callers if for_caller and self._committer.busy else self._committer

    def _suspect(self) -> bool:
        """True when the pool is set aside: after a broken connection here, or after an
        outage seen by another user of the same account (this pool's connections may
        have died unnoticed). Every call asks first, so a closed store refuses it here:
        without that, a closed pool reads as an outage, ridden out on fresh connections."""
        if self.closed:
            raise ConfigurationError(
                "this App or Client was shut down and its connections are closed; use a "
                "handle of one that is open (app.handle(id) or client.handle(id))"
            )
        if self.outage.recoveries != self._recoveries_seen:
            self._recoveries_seen = self.outage.recoveries
            self._pool_broken = True
            self._invalidate_committers()
        return self._pool_broken

    def _failed(self, exc: psycopg.Error) -> ConnectionLost:
        """A call met a broken connection: the pool is set aside until the database
        answers, and the outage is counted (logged once)."""
        self._pool_broken = True
        shown = scrub(str(exc).strip() or repr(exc), self.url)
        self.outage.failed(ConnectionLost(shown))  # logged: the driver's text, scrubbed
        return ConnectionLost(f"the database connection failed: {shown}")

    @contextlib.contextmanager
    def _reporting(self, pool: object = None) -> Iterator[None]:
        """Around a call: a broken connection leaves it as ConnectionLost (``_failed``);
        a call that asked ``pool`` for a connection after it was replaced and closed
        (``_mended``) leaves as ``_PoolReplaced``, to run again on the new pool."""
        try:
            yield
        except psycopg.Error as exc:
            self._report(exc, pool)

    def _report(self, exc: psycopg.Error, pool: object = None) -> NoReturn:
        """Raise what ``_reporting`` makes of ``exc`` (``exc`` itself: a statement's own)."""
        if self._replaced(pool, exc):
            raise _PoolReplaced from exc
        if self.dialect.limit_exceeded(exc):
            raise _beyond_limit(exc) from exc
        if self.dialect.connection_lost(exc):
            raise self._failed(exc) from exc
        raise exc

    def _replaced(self, pool: object, exc: BaseException) -> bool:
        """``exc`` came of asking ``pool`` for a connection after it was set aside: no
        statement of the call ran, and it can run on the pool that replaced it."""
        return (
            pool is not None and pool is not self.pool and isinstance(exc, psycopg_pool.PoolClosed)
        )

    @contextlib.contextmanager
    def _transacting(self, conn: Any) -> Iterator[None]:
        """Around a transaction function: its own SQL errors are its own (a statement
        timeout is not an outage), but a connection that broke under it is ConnectionLost:
        whether it committed is unknown. So is a server that takes no writes any more
        (nothing committed): the transaction runs again on the primary."""
        try:
            yield
        except psycopg.Error as exc:
            if conn.closed or conn.broken or self.dialect.read_only(exc):
                raise self._failed(exc) from exc
            raise

    def _mended(self) -> P | None:
        """The database answers again: end the outage, and replace a pool that met a
        broken connection (so no caller waits behind its reconnection back-off), having
        the committer connect afresh. Returns the pool replaced, for the caller to close."""
        self.outage.succeeded()
        self._recoveries_seen = self.outage.recoveries
        with self._lock:
            if not self._pool_broken:
                return None
            self._pool_broken = False
            self._invalidate_committers()
            old, self.pool = self.pool, self._new_pool()
        return old


class Database(PoolState[psycopg_pool.ConnectionPool[Any], SyncCommitter]):
    """A thread-safe pool of connections to one schema of one database."""

    def __init__(self, url: str, schema: str, *, max_size: int = 16, migrate: bool = True) -> None:
        super().__init__(url, schema, max_size, Outage())
        self._migrate = migrate
        # While the pool is set aside, calls run on fresh connections: at most this many
        # at once, or a burst of callers during an outage becomes a storm of connections
        # that fills the server's max_connections and keeps the outage going.
        self._fresh = threading.BoundedSemaphore(max_size)
        self.queue_statements = QueueStatements(schema, self.statements.channel, self.dialect)
        try:
            with psycopg.connect(url, autocommit=True, **connect_timeout(url)) as conn:
                self._prepare(conn)
        except psycopg.OperationalError as exc:
            raise unreachable(url, exc) from None
        self.pool = self._new_pool()
        self._committer = SyncCommitter(lambda: psycopg.connect(url, **self._connect_kwargs))
        self._callers = SyncCommitter(lambda: psycopg.connect(url, **self._connect_kwargs))

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Make the schema ready before the pool opens: create or upgrade durably's tables
        (or, when told not to migrate, refuse a schema that is missing or behind)."""
        if self._migrate:
            migrate(conn, self.schema, self.dialect)
            return
        missing = unapplied(conn, self.schema, self.dialect)
        if missing is None:
            raise ConfigurationError(
                f"schema {self.schema!r} has no durably tables in this database: check the "
                f"schema name (--schema), or create it with 'durably migrate'"
            )
        if missing:
            raise ConfigurationError(
                f"schema {self.schema!r} lacks {len(missing)} migration(s) of this durably "
                f"({', '.join(missing)}): upgrade it with 'durably migrate'"
            )

    def _new_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        return psycopg_pool.ConnectionPool(
            self.url, open=True, name="durably", **self._pool_options()
        )

    def run(self, statement: Statement) -> Result:
        """Run one statement in its own transaction."""
        return self._pooled((statement,), transaction=False)

    def run_transaction(self, statements: Sequence[Statement]) -> Result:
        """Run statements in one transaction (one round trip); return the last's result."""
        return self._pooled(statements, transaction=True)

    def _pooled(self, statements: Sequence[Statement], transaction: bool) -> Result:
        while True:
            if self._suspect():
                return self.retry(statements)
            pool = self.pool
            try:
                with self._reporting(pool), pool.connection() as conn:
                    return run_sync(conn, statements, transaction=transaction)
            except _PoolReplaced:
                continue

    def write(self, statement: Statement, *, for_caller: bool = False) -> Result:
        """Run a write, sharing its commit with concurrent writes (group commit).
        ``for_caller``: its caller waits only for it (a start, an enqueue), and it is
        never queued behind the running workflows' checkpoints."""
        self._suspect()
        try:  # _reporting, spelt out: no context manager to make on every write
            return self._committer_for(for_caller).submit(statement)
        except psycopg.Error as exc:
            self._report(exc)

    def transact(
        self,
        name: str,
        isolation: str,
        body: Callable[[psycopg.Connection[Any]], Any],
        checkpoint: Checkpoint,
        pipeline: bool = False,
    ) -> Transacted:
        """Run ``body`` and its checkpoint in one transaction (``store.transact``), on a
        pooled connection, or on a fresh one while the pool is set aside."""
        if self._suspect():
            with self._fresh:
                with self._reporting():
                    conn = psycopg.connect(self.url, **self._retry_kwargs)
                with conn, self._transacting(conn):
                    done = transact_sync(
                        conn, self.dialect, name, isolation, body, checkpoint, pipeline
                    )
            self._close_later(self._mended())
            return done
        pool = self.pool
        try:
            with pool.connection() as conn, self._transacting(conn):
                return transact_sync(
                    conn, self.dialect, name, isolation, body, checkpoint, pipeline
                )
        except psycopg_pool.PoolClosed as exc:
            if not self._replaced(pool, exc):
                raise
        return self.transact(name, isolation, body, checkpoint, pipeline)

    def _close_later(self, old: psycopg_pool.ConnectionPool[Any] | None) -> None:
        if old is not None:
            # Closing waits for the old pool's workers; nobody needs to wait for that.
            threading.Thread(target=old.close, name="durably-pool-close", daemon=True).start()

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
        """Run again, in one transaction, statements whose outcome is unknown, each in its
        settling form (``Statement.retried``): on a fresh connection while the pool is set
        aside (also how every call runs then: during an outage it fails at once), else on
        the pool, which the first success replaced (thousands of settling callers must
        not each pay a connection once the database answers)."""
        settling = _settling(statements)
        if not self._suspect():
            pool = self.pool
            try:
                with self._reporting(pool), pool.connection() as conn:
                    return run_sync(conn, settling, transaction=len(settling) > 1)
            except _PoolReplaced:
                pass  # replaced under this call: a fresh connection, as while set aside
        with (
            self._fresh,
            self._reporting(),
            psycopg.connect(self.url, **self._retry_kwargs) as conn,
        ):
            result = run_sync(conn, settling, transaction=len(settling) > 1)
        self._close_later(self._mended())
        return result

    def close(self) -> None:
        self.closed = True
        self._committer.close()
        self._callers.close()
        self.pool.close()


class AsyncDatabase(PoolState[psycopg_pool.AsyncConnectionPool[Any], AsyncCommitter]):
    """The async twin of ``Database``, bound to the event loop that opened it."""

    def __init__(
        self, url: str, schema: str, *, max_size: int = 8, outage: Outage | None = None
    ) -> None:
        super().__init__(url, schema, max_size, outage if outage is not None else Outage())
        self._closing: set[asyncio.Task[None]] = set()
        self._fresh = asyncio.Semaphore(max_size)  # as Database._fresh
        self.pool = self._new_pool()
        self._committer = AsyncCommitter(
            lambda: psycopg.AsyncConnection.connect(url, **self._connect_kwargs)
        )
        self._callers = AsyncCommitter(
            lambda: psycopg.AsyncConnection.connect(url, **self._connect_kwargs)
        )

    def _new_pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        return psycopg_pool.AsyncConnectionPool(
            self.url, open=False, name="durably-async", **self._pool_options()
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def run(self, statement: Statement) -> Result:
        """Run one statement in its own transaction."""
        return await self._pooled((statement,), transaction=False)

    async def run_transaction(self, statements: Sequence[Statement]) -> Result:
        """Async twin of Database.run_transaction."""
        return await self._pooled(statements, transaction=True)

    async def _pooled(self, statements: Sequence[Statement], transaction: bool) -> Result:
        while True:
            if self._suspect():
                return await self.retry(statements)
            pool = self.pool
            try:
                with self._reporting(pool):
                    async with pool.connection() as conn:
                        return await run_async(conn, statements, transaction=transaction)
            except _PoolReplaced:
                continue

    async def write(self, statement: Statement, *, for_caller: bool = False) -> Result:
        """Async twin of Database.write."""
        self._suspect()
        try:
            return await self._committer_for(for_caller).submit(statement)
        except psycopg.Error as exc:
            self._report(exc)

    async def transact(
        self,
        name: str,
        isolation: str,
        body: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]],
        checkpoint: Checkpoint,
        pipeline: bool = False,
    ) -> Transacted:
        """Async twin of Database.transact (``body`` is a coroutine function)."""
        if self._suspect():
            async with self._fresh:
                with self._reporting():
                    conn = await psycopg.AsyncConnection.connect(self.url, **self._retry_kwargs)
                async with conn:
                    with self._transacting(conn):
                        done = await transact_async(
                            conn, self.dialect, name, isolation, body, checkpoint, pipeline
                        )
            await self._mend()
            return done
        pool = self.pool
        try:
            async with pool.connection() as conn:
                with self._transacting(conn):
                    return await transact_async(
                        conn, self.dialect, name, isolation, body, checkpoint, pipeline
                    )
        except psycopg_pool.PoolClosed as exc:
            if not self._replaced(pool, exc):
                raise
        return await self.transact(name, isolation, body, checkpoint, pipeline)

    async def _mend(self) -> None:
        """The database answered on a fresh connection: a set-aside pool is replaced."""
        old = self._mended()
        if old is not None:
            await self.pool.open(wait=False)
            closing = asyncio.get_running_loop().create_task(old.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

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
        settling = _settling(statements)
        if not self._suspect():
            pool = self.pool
            try:
                with self._reporting(pool):
                    async with pool.connection() as conn:
                        return await run_async(conn, settling, transaction=len(settling) > 1)
            except _PoolReplaced:
                pass  # replaced under this call: a fresh connection, as while set aside
        async with self._fresh:
            with self._reporting():
                conn = await psycopg.AsyncConnection.connect(self.url, **self._retry_kwargs)
                async with conn:
                    result = await run_async(conn, settling, transaction=len(settling) > 1)
        await self._mend()
        return result

    async def close(self) -> None:
        self.closed = True
        await self._committer.close()
        await self._callers.close()
        await self.pool.close()


class _PoolReplaced(Exception):
    """A call asked a pool for a connection after ``_mended`` replaced and closed it."""


def connect_timeout(url: str) -> dict[str, Any]:
    """``connect_timeout=CONNECT_TIMEOUT``, unless the URL or the environment sets one."""
    if os.environ.get("PGCONNECT_TIMEOUT"):
        return {}
    try:
        given = psycopg.conninfo.conninfo_to_dict(url).get("connect_timeout")
    except psycopg.ProgrammingError:
        given = None
    return {} if given else {"connect_timeout": CONNECT_TIMEOUT}


def unreachable(url: str, exc: psycopg.OperationalError) -> DatabaseUnavailable:
    """The first connection failed: one line naming the server (never its password) and
    the driver's reason (its message spans lines: a hint, one line per address tried)."""
    reason = " ".join(scrub(str(exc), url).split()) or type(exc).__name__
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {redact(url)}: {reason} (check the URL and that "
        f"the server runs and accepts connections from here)"
    )
