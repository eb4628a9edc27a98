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


def test_retention_policy_is_applied_by_a_worker(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from durably.runtime import sweeper

    monkeypatch.setattr(sweeper, "SWEEP_EVERY", 0.2)
    monkeypatch.setattr(sweeper, "SWEEP_BATCH", 2)  # several batches, other duties between
    # Successes go after a day; errors are kept (not named); cancelled after a week.
    app = make_app(
        retention={"SUCCESS": timedelta(days=1), durably.Status.CANCELLED: timedelta(days=7)}
    )

    @app.workflow(name="ok")
    def ok(x: int) -> int:
        return x

    @app.workflow(name="bad")
    def bad() -> None:
        raise RuntimeError("no")

    @app.workflow(name="waits")
    def waits() -> Any:
        return durably.recv("go", timeout=3600)

    with app:
        for i in range(5):
            ok.options(id=f"old-{i}")(i)
        ok.options(id="recent")(9)
        with pytest.raises(RuntimeError):
            bad.options(id="old-error")()
        running = waits.options(id="running").start()
        db.execute(
            f"UPDATE workflows SET completed_at = {OLD}, created_at = {OLD} WHERE id <> 'recent'"
        )
        wait_until(
            lambda: {w.id for w in app.list_workflows()} == {"recent", "old-error", "running"},
            what="the sweep",
        )
        # The worker goes on working while and after it sweeps.
        app.send("running", "go", topic="go")
        assert running.result(timeout=30) == "go"
        assert ok(3) == 3


def test_retention_turns_are_taken_by_one_worker(make_app: Callable[..., durably.App]) -> None:
    app = make_app()
    with app:
        db, statements = app.engine.db, app.engine.statements
        # The first to ask takes the turn; everyone else waits for the next one.
        assert len(db.run(statements.claim_chore("retention", 3600))) == 1
        assert db.run(statements.claim_chore("retention", 3600)) == []
        assert len(db.run(statements.claim_chore("other", 3600))) == 1


def test_retention_policy_refuses_bad_input(make_app: Callable[..., durably.App]) -> None:
    for bad, words in (
        ({"PENDING": timedelta(days=1)}, "only finished"),
        ({"DEAD_LETTER": timedelta(days=1)}, "only finished"),
        ({"SUCCESS": 30}, "positive timedelta"),
        (timedelta(0), "positive timedelta"),
        ({}, "mapping of finished status"),
        (30, "mapping of finished status"),
    ):
        with pytest.raises(durably.ConfigurationError, match=words):
            make_app(retention=bad)


def test_gc_by_status(make_app: Callable[..., durably.App], db: psycopg.Connection[Any]) -> None:
    app = make_app()

    @app.workflow(name="ok")
    def ok() -> int:
        return 1

    @app.workflow(name="bad")
    def bad() -> None:
        raise RuntimeError("no")

    with app:
        ok.options(id="s")()
        with pytest.raises(RuntimeError):
            bad.options(id="e")()
        db.execute(f"UPDATE workflows SET completed_at = {OLD}")
        with pytest.raises(durably.InvalidArgument, match="finished statuses"):
            app.gc(timedelta(days=1), statuses=["PENDING"])
        assert app.gc(timedelta(days=1), statuses=["error"]).workflows == 1
        assert [w.id for w in app.list_workflows()] == ["s"]
