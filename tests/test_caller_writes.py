"""A caller's start or enqueue never waits behind the running workflows' checkpoints.

Each test holds a lock on a running workflow's row, so that its checkpoint batch is stuck
in flight, then starts (or enqueues) another workflow: the handle must come back, its
row committed, while the batch is still stuck. Queued behind it, the start would wait
for the lock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

import durably
from support import DEADLINE, wait_until

pytestmark = pytest.mark.timeout(90)


def _checkpoint_waits_on_lock(db: psycopg.Connection[Any]) -> bool:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%%INSERT INTO%%operations%%'"
    ).fetchone()
    assert row is not None
    return int(row[0]) > 0


def _rows(db: psycopg.Connection[Any], sql: str, *params: Any) -> int:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


class Locker:
    """Holds a workflow's row locked, in an open transaction, until ``unlock``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def lock(self, workflow_id: str) -> None:
        self.conn.execute("SELECT 1 FROM workflows WHERE id = %s FOR UPDATE", (workflow_id,))

    def unlock(self) -> None:
        self.conn.rollback()


@pytest.fixture
def locker(pg_url: str, schema: str) -> Iterator[Locker]:
    conn = psycopg.connect(pg_url)
    conn.execute(psycopg.sql.SQL("SET search_path = {}").format(psycopg.sql.Identifier(schema)))
    conn.commit()
    try:
        yield Locker(conn)
    finally:
        conn.rollback()
        conn.close()


def test_start_does_not_wait_behind_a_stuck_checkpoint(
    make_app: Callable[..., durably.App],
    locker: Locker,
    db: psycopg.Connection[Any],
) -> None:
    app = make_app()
    entered, release = threading.Event(), threading.Event()

    @app.step()
    def hold() -> str:
        entered.set()
        assert release.wait(DEADLINE)
        return "held"

    @app.workflow()
    def held() -> str:
        return hold()

    @app.workflow()
    def quick(n: int) -> int:
        return n * 2

    emails = app.queue("emails")
    app.launch()
    stuck = held.start()
    assert entered.wait(DEADLINE)
    locker.lock(stuck.id)
    release.set()  # its checkpoint now waits for the lock, its batch in flight
    wait_until(lambda: _checkpoint_waits_on_lock(db), what="the checkpoint waits on the lock")

    with ThreadPoolExecutor(2) as pool:
        started = pool.submit(quick.start, 21)
        enqueued = pool.submit(emails.enqueue, quick, 5)
        handle = started.result(timeout=DEADLINE)
        queued = enqueued.result(timeout=DEADLINE)

    # Both rows are committed while the stuck batch still waits.
    assert _checkpoint_waits_on_lock(db)
    assert (
        _rows(db, "SELECT count(*) FROM workflows WHERE id = ANY(%s)", [handle.id, queued.id]) == 2
    )
    assert _rows(db, "SELECT count(*) FROM operations WHERE workflow_id = %s", stuck.id) == 0
    # Their finishes are checkpoints: they go in once the stuck batch is through.
    locker.unlock()
    assert stuck.result(timeout=DEADLINE) == "held"
    assert handle.result(timeout=DEADLINE) == 42
    assert queued.result(timeout=DEADLINE) == 10


def test_start_async_does_not_wait_behind_a_stuck_checkpoint(
    make_app: Callable[..., durably.App],
    locker: Locker,
    db: psycopg.Connection[Any],
) -> None:
    app = make_app()
    entered, release = threading.Event(), threading.Event()

    @app.step()
    async def hold() -> str:
        entered.set()
        assert await asyncio.to_thread(release.wait, DEADLINE)
        return "held"

    @app.workflow()
    async def held() -> str:
        return await hold()

    @app.workflow()
    async def quick(n: int) -> int:
        return n * 2

    app.launch()

    async def scenario() -> None:
        # Run here, on this loop: its checkpoint goes through this loop's group commit,
        # the one the start below would otherwise queue behind.
        running = asyncio.create_task(held.options(id="held-1")())
        assert await asyncio.to_thread(entered.wait, DEADLINE)
        locker.lock("held-1")
        release.set()
        await asyncio.to_thread(
            wait_until, lambda: _checkpoint_waits_on_lock(db), DEADLINE, "the checkpoint waits"
        )
        handle = await asyncio.wait_for(quick.start_async(21), DEADLINE)
        assert _checkpoint_waits_on_lock(db)
        assert _rows(db, "SELECT count(*) FROM workflows WHERE id = %s", handle.id) == 1
        locker.unlock()
        assert await asyncio.wait_for(running, DEADLINE) == "held"
        assert await asyncio.to_thread(handle.result, DEADLINE) == 42

    asyncio.run(scenario())
