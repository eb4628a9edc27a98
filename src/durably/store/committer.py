"""Group commit: writes from many concurrent workflows share one transaction.

A caller that finds no batch in flight becomes the leader and runs what is queued,
its own write included, at once: a lone workflow pays no added latency. Callers that
arrive while a batch is in flight queue up and go out together in the next one. One
batch is one pipelined transaction, so N checkpoints cost one commit.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import kwargs_row

from durably.store import faults
from durably.store.statements import Statement

Result = Any  # rowcount (int) or rows (list of tuples), as the statement asks


class Pending:
    """One queued write and, once its batch ran, its result or error."""

    __slots__ = ("done", "error", "event", "result", "statement", "waiter")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.result: Result = None
        self.error: BaseException | None = None
        self.done = False
        self.waiter: asyncio.Future[None] | None = None  # async: resolved when done
        self.event: threading.Event | None = None  # sync: set when done or made leader

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result


@functools.cache
def _row_factory(row: Any) -> Any:
    """One row factory per row type (not one per statement run)."""
    return kwargs_row(row)


def _execute(conn: psycopg.Connection[Any], statement: Statement) -> psycopg.Cursor[Any]:
    """Execute a statement; its rows come back as its row type, built by column name."""
    if statement.row is None:
        return conn.execute(statement.sql, statement.params, prepare=True)
    cur = conn.cursor(row_factory=_row_factory(statement.row))
    return cur.execute(statement.sql, statement.params, prepare=True)


async def _execute_async(
    conn: psycopg.AsyncConnection[Any], statement: Statement
) -> psycopg.AsyncCursor[Any]:
    """Async twin of _execute."""
    if statement.row is None:
        return await conn.execute(statement.sql, statement.params, prepare=True)
    cur = conn.cursor(row_factory=_row_factory(statement.row))
    return await cur.execute(statement.sql, statement.params, prepare=True)


def run_sync(conn: psycopg.Connection[Any], statement: Statement) -> Result:
    """Run one statement in its own (autocommit) transaction."""
    cur = _execute(conn, statement)
    result = cur.fetchall() if statement.returns == "rows" else cur.rowcount
    faults.after_commit(conn, (statement.name,))
    return result


def run_transaction_sync(conn: psycopg.Connection[Any], statements: Sequence[Statement]) -> Result:
    """Run statements in one pipelined transaction; the last one's result is returned."""
    with conn.pipeline(), conn.transaction():
        cursors = [_execute(conn, st) for st in statements]
    faults.after_commit(conn, [st.name for st in statements])
    last, statement = cursors[-1], statements[-1]
    return last.fetchall() if statement.returns == "rows" else last.rowcount


async def run_transaction_async(
    conn: psycopg.AsyncConnection[Any], statements: Sequence[Statement]
) -> Result:
    """Async twin of run_transaction_sync."""
    async with conn.pipeline(), conn.transaction():
        cursors = [await _execute_async(conn, st) for st in statements]
    await faults.after_commit_async(conn, [st.name for st in statements])
    last, statement = cursors[-1], statements[-1]
    return await last.fetchall() if statement.returns == "rows" else last.rowcount


async def run_async(conn: psycopg.AsyncConnection[Any], statement: Statement) -> Result:
    """Run one statement in its own (autocommit) transaction."""
    cur = await _execute_async(conn, statement)
    result = await cur.fetchall() if statement.returns == "rows" else cur.rowcount
    await faults.after_commit_async(conn, (statement.name,))
    return result


Entry = tuple[Statement, list[Pending], Callable[[Any], list[Any]] | None]


def plan(batch: list[Pending]) -> list[Entry]:
    """The statements that answer a batch: combinable writes of one kind become one."""
    entries: list[Entry] = []
    groups: dict[Any, list[Pending]] = {}
    for item in batch:
        combine = item.statement.combine
        if combine is None:
            entries.append((item.statement, [item], None))
        else:
            groups.setdefault(combine, []).append(item)
    for combine, items in groups.items():
        if len(items) == 1:
            entries.append((items[0].statement, items, None))
        else:
            statement, split = combine([item.statement for item in items])
            entries.append((statement, items, split))
    return entries


def settle(entry: Entry, result: Result) -> None:
    _, items, split = entry
    if split is None:
        items[0].result = result
    else:
        for item, share in zip(items, split(result), strict=True):
            item.result = share


def _fail_unsettled(batch: list[Pending], exc: BaseException) -> None:
    for item in batch:
        if item.result is None and item.error is None:
            item.error = exc


def execute_batch_sync(conn: psycopg.Connection[Any], batch: list[Pending]) -> None:
    """Run a batch in one pipelined transaction; if it failed before its commit, run
    each write alone (after the commit, running them again would find them done)."""
    entries = plan(batch)
    committed = False
    try:
        if len(entries) == 1:
            settle(entries[0], run_sync(conn, entries[0][0]))
            return
        with conn.pipeline(), conn.transaction():
            cursors = [_execute(conn, st) for st, _, _ in entries]
        committed = True
        faults.after_commit(conn, [st.name for st, _, _ in entries])
        for entry, cur in zip(entries, cursors, strict=True):
            settle(entry, cur.fetchall() if entry[0].returns == "rows" else cur.rowcount)
    except psycopg.Error as exc:
        if committed or conn.closed or conn.broken:
            # Committed, or perhaps committed (the link broke): never run them again
            # here; each writer settles its own outcome.
            _fail_unsettled(batch, exc)
            return
        # One statement (a deadlock with a takeover, say) aborted the shared
        # transaction: give every write its own answer.
        for item in batch:
            try:
                item.result = run_sync(conn, item.statement)
            except Exception as error:
                item.error = error


async def execute_batch_async(conn: psycopg.AsyncConnection[Any], batch: list[Pending]) -> None:
    """Async twin of execute_batch_sync."""
    entries = plan(batch)
    committed = False
    try:
        if len(entries) == 1:
            settle(entries[0], await run_async(conn, entries[0][0]))
            return
        async with conn.pipeline(), conn.transaction():
            cursors = [await _execute_async(conn, st) for st, _, _ in entries]
        committed = True
        await faults.after_commit_async(conn, [st.name for st, _, _ in entries])
        for entry, acur in zip(entries, cursors, strict=True):
            settle(entry, await acur.fetchall() if entry[0].returns == "rows" else acur.rowcount)
    except psycopg.Error as exc:
        if committed or conn.closed or conn.broken:
            _fail_unsettled(batch, exc)
            return
        for item in batch:
            try:
                item.result = await run_async(conn, item.statement)
            except Exception as error:
                item.error = error


class SyncCommitter:
    """Leader/follower group commit for threads, on a connection of its own (no pool
    round trip per write: the leader is the only one using it).

    Each waiting thread sleeps on its own event: a finished batch wakes exactly its
    writers, and hands the lead to the oldest waiting writer, if any (no herd of
    threads racing for one lock).
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._queue: list[Pending] = []
        self._leading = False
        self._stale = False

    def invalidate(self) -> None:
        """The database was away: the next batch connects afresh instead of failing on a
        connection that died meanwhile."""
        self._stale = True

    def submit(self, statement: Statement) -> Result:
        item = Pending(statement)
        with self._lock:
            self._queue.append(item)
            follow = self._leading
            if follow:
                item.event = threading.Event()
            else:
                self._leading = True
        if follow:
            item.event.wait()  # type: ignore[union-attr]
            if item.done:
                return item.outcome()
            # Woken without a result: this thread leads the next batch.
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            conn = self._conn
            if conn is not None and self._stale:
                self._stale, self._conn = False, None
                conn.close()
                conn = None
            if conn is None or conn.closed:
                conn = self._conn = self._connect()
            execute_batch_sync(conn, batch)
            if conn.broken or conn.closed:
                self._conn = None
                conn.close()
        except BaseException as exc:  # no connection: fail the whole batch
            for other in batch:
                if other.error is None and other.result is None:
                    other.error = exc
        finally:
            with self._lock:
                for other in batch:
                    other.done = True
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._leading = False
            for other in batch:
                if other.event is not None:
                    other.event.set()
            if successor is not None and successor.event is not None:
                successor.event.set()
        return item.outcome()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class AsyncCommitter:
    """Group commit for tasks of one event loop, on a connection of its own."""

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]) -> None:
        self._connect = connect
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._queue: list[Pending] = []
        self._leading = False
        self._stale = False
        self._tasks: set[asyncio.Task[None]] = set()

    def invalidate(self) -> None:
        """Async twin of SyncCommitter.invalidate."""
        self._stale = True

    async def submit(self, statement: Statement) -> Result:
        item = Pending(statement)
        item.waiter = asyncio.get_running_loop().create_future()
        self._queue.append(item)
        if not self._leading:
            self._leading = True
            await self._lead()
        await item.waiter
        return item.outcome()

    async def _lead(self) -> None:
        batch, self._queue = self._queue, []
        try:
            conn = self._conn
            if conn is not None and self._stale:
                self._stale, self._conn = False, None
                await conn.close()
                conn = None
            if conn is None or conn.closed:
                conn = self._conn = await self._connect()
            await execute_batch_async(conn, batch)
            if conn.broken or conn.closed:
                self._conn = None
                await conn.close()
        except BaseException as exc:
            for other in batch:
                if other.error is None and other.result is None:
                    other.error = exc
        finally:
            for other in batch:
                other.done = True
                if other.waiter is not None and not other.waiter.done():
                    other.waiter.set_result(None)
            if self._queue:
                task = asyncio.get_running_loop().create_task(self._lead())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._leading = False

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
