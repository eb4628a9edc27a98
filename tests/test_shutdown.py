"""Launch and shutdown edges: a launch that failed can be tried again; workflows still
running during ``shutdown(grace)`` keep recording their steps and starting real children."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import durably
from durably.execution.context import in_step
from support import wait_until

pytestmark = pytest.mark.timeout(60)


def test_a_failed_launch_can_be_tried_again(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app()

    @app.workflow
    def wf(x: int) -> int:
        return x + 1

    app.engine  # connects and creates the schema  # noqa: B018
    # The executor's first heartbeat fails (not a connection error: it is not retried).
    db.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'no executors today'; END $$"
    )
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON executors "
        "FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    with pytest.raises(psycopg.Error, match="no executors today"):
        app.launch()
    db.execute("DROP TRIGGER refuse ON executors")
    app.launch()
    assert wf(1) == 2
    assert wf.start(2).result(timeout=30) == 3


def test_workflows_finishing_during_shutdown_still_record_steps_and_children(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    inside: list[Any] = []
    started = threading.Event()
    release = threading.Event()

    @app.step
    def probe(label: str) -> str:
        inside.append((label, in_step.get()))
        return label

    @app.workflow
    def child() -> str:
        return probe("child")

    @app.workflow
    def parent() -> list[str]:
        first = probe("before")
        started.set()
        release.wait(30)
        return [first, probe("after"), child()]

    handle = parent.start()
    assert started.wait(30)
    stopping = threading.Thread(target=app.shutdown, kwargs={"grace": 20})
    stopping.start()
    # Shutdown is now waiting for the running workflow: let it go on.
    wait_until(lambda: app.engine._closed, what="shutdown under way")
    release.set()
    stopping.join(30)
    assert not stopping.is_alive()
    assert [label for label, _ in inside] == ["before", "after", "child"]
    assert all(position is not None for _, position in inside), inside
    ops = db.execute(
        "SELECT step, kind FROM operations WHERE workflow_id = %s ORDER BY step", (handle.id,)
    ).fetchall()
    assert ops == [(1, "step"), (2, "step"), (3, "child")], ops
    rows = db.execute("SELECT parent_id FROM workflows WHERE name LIKE %s", ("%child",)).fetchall()
    assert rows == [(handle.id,)]


def test_connections_opened_on_a_callers_loop_close_with_that_loop(app: durably.App) -> None:
    """``asyncio.run(wf())`` opens connections on the caller's loop; they are closed on
    that loop as asyncio.run shuts it down, not left to the garbage collector."""
    import asyncio

    seen: list[Any] = []

    @app.workflow
    async def wf(x: int) -> int:
        seen.append(await app.engine.async_db())
        return x

    assert asyncio.run(wf(1)) == 1
    assert asyncio.run(wf(2)) == 2
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert all(adb.pool.closed for adb in seen)


def test_shutdown_names_what_it_leaves_and_ends_its_lease(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(executor_id="leaving", lease=600.0)
    inside = threading.Event()
    release = threading.Event()

    @app.step
    def hold() -> None:
        inside.set()
        release.wait(30)

    @app.workflow(name="held")
    def held() -> None:
        hold()

    @app.workflow(name="quick")
    def quick() -> int:
        return 1

    app.launch()
    assert quick.start().result(timeout=30) == 1
    held.options(id="h-1").start()
    assert inside.wait(30)
    try:
        with caplog.at_level(logging.WARNING, logger="durably"):
            app.shutdown(grace=0)
    finally:
        release.set()
    [record] = [r for r in caplog.records if "shut down with" in r.getMessage()]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "executor leaving shut down with 1 workflow(s) unfinished" in message
    assert "h-1 (held)" in message and "released" in message
    assert record.executor_id == "leaving"  # type: ignore[attr-defined]
    assert record.workflow_ids == ["h-1"]  # type: ignore[attr-defined]
    assert record.workflow_names == ["held"]  # type: ignore[attr-defined]
    row = db.execute(
        "SELECT heartbeat_at + make_interval(secs => lease_seconds) < now() FROM executors "
        "WHERE id = 'leaving'"
    ).fetchone()
    assert row == (True,)  # others take h-1 over at their next heartbeat


def test_a_shutdown_that_leaves_nothing_removes_its_row_quietly(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(executor_id="tidy")

    @app.workflow
    def quick() -> int:
        return 1

    app.launch()
    assert quick.start().result(timeout=30) == 1
    with caplog.at_level(logging.WARNING, logger="durably"):
        app.shutdown(grace=5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert db.execute("SELECT id FROM executors WHERE id = 'tidy'").fetchall() == []
