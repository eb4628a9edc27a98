"""Running statements on a connection, and group commit of concurrent writes.

Writes from many concurrent workflows share one transaction. A caller that finds no
batch in flight becomes the leader and runs what is queued, its own write included, at
once: a lone workflow pays no added latency. Callers that arrive while a batch is in
flight queue up and go out together in the next one. One batch is one pipelined
transaction, so N checkpoints cost one commit.

What a batch runs, and what is decided when it fails, is written once (``plan``,
``settle``, ``to_rerun``, ``GroupCommit``); the thread and the event-loop versions
differ only where one of them waits.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import kwargs_row, tuple_row

from durably.store import faults, oneshot
from durably.store.statements import Statement

Result = Any  # rowcount (int) or rows (list of named rows), as the statement asks

C = TypeVar("C", psycopg.Connection[Any], psycopg.AsyncConnection[Any])

# The smallest half a batch is split into (see GroupCommit._take_queue). Measured with
# asyncio.gather of async 10-step workflows: 1,000 gain 27% from halves of 500, 50 lose
# 3% from halves of 25.
SPLIT_FROM = 64


class Pending:
    """One queued write and, once its batch ran, its result or error."""

    __slots__ = ("done", "error", "result", "statement", "waiter", "woken")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.result: Result = None
        self.error: BaseException | None = None
        self.done = False
        self.waiter: asyncio.Future[None] | None = None  # async: resolved when done
        # sync: held while its thread sleeps on it; released when done or made leader (a
        # bare lock: a threading.Event costs about ten times as much to make and set).
        self.woken: threading.Lock | None = None

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result


@functools.cache
def _row_factory(row: Any) -> Any:
    """One row factory per row type (not one per statement run); plain tuples without."""
    return tuple_row if row is None else kwargs_row(row)


def _names(statements: Sequence[Statement]) -> list[str]:
    return [st.name for st in statements]


# ------------------------------------------------------------------ one round trip
# ``_send_*`` executes statements, each alone (autocommit) or all in one pipelined
# transaction: when it returns, they committed. ``_receive_*`` then reads their results
# (rows come back as the statement's row type, built by column name), and gives the
# lost-reply hook of ``faults`` its chance to drop them.


def _execute(conn: psycopg.Connection[Any], st: Statement) -> psycopg.Cursor[Any]:
    cursor = conn.cursor(row_factory=_row_factory(st.row))
    return cursor.execute(st.sql, st.params, prepare=st.prepare)


async def _execute_async(
    conn: psycopg.AsyncConnection[Any], st: Statement
) -> psycopg.AsyncCursor[Any]:
    cursor = conn.cursor(row_factory=_row_factory(st.row))
    return await cursor.execute(st.sql, st.params, prepare=st.prepare)


def _send_sync(
    conn: psycopg.Connection[Any], statements: Sequence[Statement], transaction: bool
) -> list[Any]:
    if oneshot.AVAILABLE:
        if transaction:
            return list(oneshot.run_sync(conn, statements))
        return [oneshot.run_sync(conn, [st])[0] for st in statements]
    if not transaction:
        return [_execute(conn, st) for st in statements]
    with conn.pipeline(), conn.transaction():
        return [_execute(conn, st) for st in statements]


async def _send_async(
    conn: psycopg.AsyncConnection[Any], statements: Sequence[Statement], transaction: bool
) -> list[Any]:
    if oneshot.AVAILABLE:
        if transaction:
            return list(await oneshot.run_async(conn, statements))
        return [(await oneshot.run_async(conn, [st]))[0] for st in statements]
    if not transaction:
        return [await _execute_async(conn, st) for st in statements]
    async with conn.pipeline(), conn.transaction():
        return [await _execute_async(conn, st) for st in statements]


def _read_sync(st: Statement, sent: Any) -> Result:
    if isinstance(sent, oneshot.Outcome):
        return sent.result
    return sent.fetchall() if st.returns == "rows" else sent.rowcount


async def _read_async(st: Statement, sent: Any) -> Result:
    if isinstance(sent, oneshot.Outcome):
        return sent.result
    return await sent.fetchall() if st.returns == "rows" else sent.rowcount


def _receive_sync(
    conn: psycopg.Connection[Any], statements: Sequence[Statement], cursors: list[Any]
) -> list[Result]:
    results = [_read_sync(st, cur) for st, cur in zip(statements, cursors, strict=True)]
    faults.after_commit(conn, _names(statements))
    return results


async def _receive_async(
    conn: psycopg.AsyncConnection[Any], statements: Sequence[Statement], cursors: list[Any]
) -> list[Result]:
    results = [await _read_async(st, cur) for st, cur in zip(statements, cursors, strict=True)]
    await faults.after_commit_async(conn, _names(statements))
    return results


def run_sync(
    conn: psycopg.Connection[Any], statements: Sequence[Statement], *, transaction: bool
) -> Result:
    """Run statements (each alone, or in one pipelined transaction); the last one's result."""
    return _receive_sync(conn, statements, _send_sync(conn, statements, transaction))[-1]


async def run_async(
    conn: psycopg.AsyncConnection[Any], statements: Sequence[Statement], *, transaction: bool
) -> Result:
    """Async twin of run_sync."""
    cursors = await _send_async(conn, statements, transaction)
    return (await _receive_async(conn, statements, cursors))[-1]


# ------------------------------------------------------------------ one batch

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


def settle(entries: list[Entry], results: list[Result]) -> None:
    """Give each write of a batch its share of the results of the statements that ran."""
    for (_, items, split), result in zip(entries, results, strict=True):
        if split is None:
            items[0].result = result
        else:
            for item, share in zip(items, split(result), strict=True):
                item.result = share


def _fail_unsettled(batch: list[Pending], exc: BaseException) -> None:
    for item in batch:
        if item.result is None and item.error is None:
            item.error = exc


def to_rerun(batch: list[Pending], exc: BaseException, maybe_committed: bool) -> list[Pending]:
    """A batch failed with ``exc``: the writes to run again, each alone.

    None when it committed, or perhaps did (the link broke): running them again here
    could do them twice, so each writer gets the error and settles its own outcome.
    Otherwise one statement (a deadlock with a takeover, say) aborted the shared
    transaction, and every write gets its own answer.
    """
    if maybe_committed:
        _fail_unsettled(batch, exc)
        return []
    return batch


def execute_batch_sync(conn: psycopg.Connection[Any], batch: list[Pending]) -> None:
    """Run a batch in one pipelined transaction (or one statement alone)."""
    entries = plan(batch)
    statements = [entry[0] for entry in entries]
    committed = False
    try:
        cursors = _send_sync(conn, statements, len(entries) > 1)
        committed = True
        settle(entries, _receive_sync(conn, statements, cursors))
    except psycopg.Error as exc:
        for item in to_rerun(batch, exc, committed or conn.closed or conn.broken):
            try:
                item.result = run_sync(conn, [item.statement], transaction=False)
            except Exception as error:
                item.error = error


async def execute_batch_async(conn: psycopg.AsyncConnection[Any], batch: list[Pending]) -> None:
    """Async twin of execute_batch_sync."""
    entries = plan(batch)
    statements = [entry[0] for entry in entries]
    committed = False
    try:
        cursors = await _send_async(conn, statements, len(entries) > 1)
        committed = True
        settle(entries, await _receive_async(conn, statements, cursors))
    except psycopg.Error as exc:
        for item in to_rerun(batch, exc, committed or conn.closed or conn.broken):
            try:
                item.result = await run_async(conn, [item.statement], transaction=False)
            except Exception as error:
                item.error = error


# ------------------------------------------------------------------ group commit


class GroupCommit(Generic[C]):
    """What both committers keep: the queued writes, and a connection of their own (no
    pool round trip per write: the leader is the only one using it)."""

    def __init__(self) -> None:
        self._conn: C | None = None
        self._queue: list[Pending] = []
        self._leading = False
        self._stale = False
        # Told each batch's size after it ran (telemetry; None: nobody listens).
        self.on_batch: Callable[[int], None] | None = None

    @property
    def busy(self) -> bool:
        """True while a batch is in flight: a write submitted now waits for it to end."""
        return self._leading

    def invalidate(self) -> None:
        """The database was away: the next batch connects afresh instead of failing on a
        connection that died meanwhile."""
        self._stale = True

    def _take_queue(self, woken: int = 0) -> list[Pending]:
        """The next batch: all that is queued, or at most half of the writers in play
        (those queued, and the ``woken`` by the batch before, who compute now). Two even
        halves keep both sides busy, one computing while the other's batch commits;
        started together, writers would otherwise go out as one batch of all but the
        first, and each side would wait while the other works. Below ``SPLIT_FROM`` a
        batch's fixed cost (its commit) outweighs what the overlap wins."""
        queue = self._queue
        half = (len(queue) + woken + 1) // 2
        if woken and len(queue) > half >= SPLIT_FROM:
            batch, self._queue = queue[:half], queue[half:]
        else:
            batch, self._queue = queue, []
        return batch

    def _drop_stale(self) -> C | None:
        """Before a batch: the connection to close, when the database was away since."""
        conn = self._conn
        if conn is None or not self._stale:
            return None
        self._stale, self._conn = False, None
        return conn

    def _open_connection(self) -> C | None:
        """The connection for the next batch; None when one must be made."""
        conn = self._conn
        return None if conn is None or conn.closed else conn

    def _drop_broken(self, conn: C) -> bool:
        """After a batch: True when its connection broke (dropped here, to be closed)."""
        if conn.broken or conn.closed:
            self._conn = None
            return True
        return False


class SyncCommitter(GroupCommit[psycopg.Connection[Any]]):
    """Leader/follower group commit for threads.

    Each waiting thread sleeps on its own lock: a finished batch wakes exactly its
    writers, and hands the lead to the oldest waiting writer, if any (no herd of
    threads racing for one lock).
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        super().__init__()
        self._connect = connect
        self._lock = threading.Lock()

    def submit(self, statement: Statement) -> Result:
        item = Pending(statement)
        with self._lock:
            self._queue.append(item)
            follow = self._leading
            if follow:
                item.woken = woken = threading.Lock()
                woken.acquire()
            else:
                self._leading = True
        if follow:
            woken.acquire()  # until released: done, or made the leader
            if item.done:
                return item.outcome()
            # Woken without a result: this thread leads the next batch.
        with self._lock:
            batch = self._take_queue()
        try:
            self._run(batch)
        except BaseException as exc:  # no connection: fail the whole batch
            _fail_unsettled(batch, exc)
        finally:
            self._hand_over(batch)
        return item.outcome()

    def _run(self, batch: list[Pending]) -> None:
        stale = self._drop_stale()
        if stale is not None:
            stale.close()
        conn = self._open_connection()
        if conn is None:
            conn = self._conn = self._connect()
        execute_batch_sync(conn, batch)
        if self.on_batch is not None:
            self.on_batch(len(batch))
        if self._drop_broken(conn):
            conn.close()

    def _hand_over(self, batch: list[Pending]) -> None:
        """Wake the batch's writers, and the next leader if writes are queued."""
        with self._lock:
            for other in batch:
                other.done = True
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._leading = False
        for other in batch:
            if other.woken is not None:
                other.woken.release()
        if successor is not None and successor.woken is not None:
            successor.woken.release()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class AsyncCommitter(GroupCommit[psycopg.AsyncConnection[Any]]):
    """Group commit for tasks of one event loop."""

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]) -> None:
        super().__init__()
        self._connect = connect
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, statement: Statement) -> Result:
        item = Pending(statement)
        item.waiter = asyncio.get_running_loop().create_future()
        self._queue.append(item)
        if not self._leading:
            self._leading = True
            await self._lead()
        await item.waiter
        return item.outcome()

    async def _lead(self, woken: int = 0) -> None:
        batch = self._take_queue(woken)
        try:
            await self._run(batch)
        except BaseException as exc:
            _fail_unsettled(batch, exc)
        finally:
            # What queued meanwhile goes out from a task started before this batch's
            # writers are woken: it sends first, so the server works on it while they
            # compute their next writes (woken first, they would all compute while the
            # server idles, then wait while it works).
            if self._queue:
                task = asyncio.get_running_loop().create_task(self._lead(len(batch)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._leading = False
            for other in batch:
                other.done = True
                if other.waiter is not None and not other.waiter.done():
                    other.waiter.set_result(None)

    async def _run(self, batch: list[Pending]) -> None:
        stale = self._drop_stale()
        if stale is not None:
            await stale.close()
        conn = self._open_connection()
        if conn is None:
            conn = self._conn = await self._connect()
        await execute_batch_async(conn, batch)
        if self.on_batch is not None:
            self.on_batch(len(batch))
        if self._drop_broken(conn):
            await conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
