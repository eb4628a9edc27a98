"""Retention (``app.gc``): exactly the finished workflows older than the cutoff go, with
everything recorded for them; unfinished work and what a running parent may read stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import durably
from support import wait_until

pytestmark = pytest.mark.timeout(60)

OLD = "now() - interval '2 days'"


def count(db: psycopg.Connection[Any], table: str, workflow_id: str) -> int:
    row = db.execute(
        f"SELECT count(*) FROM {table} WHERE workflow_id = %s", (workflow_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_gc_deletes_exactly_the_old_finished_workflows(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app(park_after=0.0)

    @app.step
    def note(x: int) -> int:
        return x

    @app.workflow(name="done")
    def done(x: int) -> int:
        durably.set_event("k", x)
        durably.write_stream("s", x)
        return note(x)

    @app.workflow(name="failed")
    def failed() -> None:
        raise RuntimeError("no")

    @app.workflow(name="child")
    def child(x: int) -> int:
        return note(x)

    @app.workflow(name="waiting_parent")
    def waiting_parent() -> Any:
        child(1)
        return durably.recv("go", timeout=3600)

    @app.workflow(name="parent")
    def parent() -> int:
        return child(2)

    with app:
        for i in range(5):
            done.options(id=f"old-{i}")(i)
        done.options(id="recent")(9)
        with pytest.raises(RuntimeError):
            failed.options(id="old-failed")()
        parent.options(id="old-parent")()
        waiting = waiting_parent.options(id="running-parent").start()
        wait_until(lambda: app.list_workflows(ids=["running-parent-1"]), what="its child")
        assert app.handle("running-parent-1").result(timeout=30) == 1
        app.send("old-0", "a message", topic="t")
        # Age everything but "recent" and the running parent by two days.
        db.execute(
            f"UPDATE workflows SET completed_at = {OLD} WHERE completed_at IS NOT NULL "
            "AND id NOT IN ('recent')"
        )
        db.execute(
            "INSERT INTO executors (id, hostname, pid, lease_seconds, heartbeat_at) "
            f"VALUES ('gone-long-ago', 'h', 1, 15, {OLD})"
        )
        totals: list[int] = []
        collected = app.gc(timedelta(days=1), batch_size=2, progress=totals.append)
        # old-0..4, old-failed, old-parent and its child; not the running parent's child
        assert collected.workflows == 8
        assert collected.executors == 1
        assert totals == [2, 4, 6, 8, 8]
        left = {w.id for w in app.list_workflows()}
        assert left == {"recent", "running-parent", "running-parent-1"}
        for gone in ("old-0", "old-parent-1"):
            for table in ("operations", "messages", "events", "streams"):
                assert count(db, table, gone) == 0, (gone, table)
        assert count(db, "operations", "recent") == 3  # kept whole
        # The running parent still reads its finished child, and finishes.
        app.send("running-parent", "go", topic="go")
        assert waiting.result(timeout=30) == "go"
        executors = {r[0] for r in db.execute("SELECT id FROM executors").fetchall()}
        assert "gone-long-ago" not in executors and app.executor_id in executors
        # Its parent finished (just now): the old child may go, the parent stays.
        assert app.gc(timedelta(days=1)) == (1, 0)
        assert {w.id for w in app.list_workflows()} == {"recent", "running-parent"}
        assert app.gc(timedelta(days=1)) == (0, 0)


def test_gc_keeps_dead_letters_and_refuses_bad_input(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app()

    @app.workflow(name="quick")
    def quick() -> int:
        return 1

    with app:
        quick.options(id="dl")()
        db.execute(f"UPDATE workflows SET status = 'DEAD_LETTER', completed_at = {OLD}")
        assert app.gc(timedelta(days=1)).workflows == 0
        for bad in (timedelta(0), timedelta(days=-1), 30, None):
            with pytest.raises(durably.InvalidArgument, match="older_than"):
                app.gc(bad)  # type: ignore[arg-type]
        with pytest.raises(durably.InvalidArgument, match="batch_size"):
            app.gc(timedelta(days=1), batch_size=0)
        assert [w.id for w in app.list_workflows()] == ["dl"]
