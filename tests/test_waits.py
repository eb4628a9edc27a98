"""Durable sleep, parking (waiting costs no thread), timeouts, wait_first, and waiting for
results woken by LISTEN/NOTIFY rather than by polling."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from durably.execution import waits
from durably.runtime import engine as engine_module
from support import wait_until
from waitprocs.util import (
    Crash,
    Procs,
    background,
    crash_then_recover,
    one,
    ops,
    snapshot,
    workflow_row,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def slow_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-place waits poll the database every 30 s instead of every 1 s: anything that
    wakes within a 10 s deadline was woken by a notification."""
    monkeypatch.setattr(waits, "POLL_INTERVAL", 30.0)
    monkeypatch.setattr(engine_module, "POLL_INTERVAL", 30.0)


def watched(db: psycopg.Connection[Any], *workflow_ids: str) -> bool:
    """Whether a waiter asked to be notified of each workflow's outcome."""
    rows = db.execute(
        "SELECT count(*) FROM watchers WHERE workflow_id = ANY(%s)", (list(workflow_ids),)
    ).fetchone()
    return rows is not None and rows[0] == len(workflow_ids)


def parked(db: psycopg.Connection[Any], workflow_id: str, kind: str) -> bool:
    row = workflow_row(db, workflow_id)
    return row["status"] == "PENDING" and row["executor_id"] is None and row["wait_kind"] == kind


# ------------------------------------------------------------------------ sleep


def test_sleep_records_its_wake_up_time(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.workflow
    def nap() -> str:
        durably.sleep(0.2)
        return "rested"

    assert nap.options(id="nap")() == "rested"
    ((step, _name, kind, output),) = ops(db, "nap")
    assert (step, kind) == (1, "sleep")
    wake_at = datetime.fromisoformat(output)
    started = one(db, "SELECT started_at FROM operations WHERE workflow_id = 'nap'")
    assert wake_at - started == timedelta(seconds=0.2)
    assert workflow_row(db, "nap")["completed_at"] >= wake_at  # never wakes early
    (info,) = app.list_steps("nap")
    assert (info.step, info.kind) == (1, "sleep")


def test_replay_of_a_finished_sleep_returns_at_once(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    # The recovered code asks for an hour at the same position: only the recorded
    # wake-up time counts, and it has passed, so the replay must not wait at all.
    state = {"crash": True, "seconds": 0.05}

    def build(app: durably.App) -> Any:
        @app.step(name="maybe_crash")
        def maybe_crash() -> None:
            if state["crash"]:
                state["crash"], state["seconds"] = False, 3600
                raise Crash()

        @app.workflow(name="napper")
        def napper() -> str:
            durably.sleep(state["seconds"])
            maybe_crash()
            return "done"

        return napper

    before: list[Any] = []

    def start(wf: Any) -> None:
        try:
            wf.options(id="n1")()
        finally:
            before.extend(ops(db, "n1"))  # what the crashed run left

    app2, _ = crash_then_recover(make_app, build, start)
    assert [op[2] for op in before] == ["sleep"]
    assert app2.handle("n1").result(timeout=10) == "done"
    after = ops(db, "n1")
    assert after[0] == before[0]  # the sleep is recorded once, unchanged
    assert [op[2] for op in after] == ["sleep", "step"]


def test_sleep_resumed_after_sigkill_sleeps_only_the_rest(
    procs: Procs, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    config = {"executor_id": "sleepy", "lease": 30.0, "effects": str(effects)}
    first = procs.worker(mode="start", wf="wp.sleeper", id="zz", args=[4.0], **config)
    first.expect("started")
    sleep_op = wait_until(
        lambda: [op for op in ops(db, "zz") if op[2] == "sleep"], what="the sleep recorded"
    )
    wake_at = datetime.fromisoformat(sleep_op[0][3])
    slept_from = wake_at - timedelta(seconds=4)
    wait_until(
        lambda: datetime.now(UTC) >= slept_from + timedelta(seconds=1.5),
        what="1.5 s of the sleep",
    )
    first.kill()
    assert workflow_row(db, "zz")["status"] == "PENDING"

    second = procs.worker(mode="recover", id="zz", **config)
    second.expect("ready")
    done = second.expect("done", timeout=15)
    assert done["value"] == [first.pid, second.pid]
    completed = workflow_row(db, "zz")["completed_at"]
    assert completed >= wake_at  # it slept at least the remaining time
    # The replay slept until the recorded wake-up time (recorded once, below), not for
    # a new full period; how long that took is not asserted (no timing in tests).
    assert [op for op in ops(db, "zz") if op[2] == "sleep"] == sleep_op  # recorded once
    lines = effects.read_text().split("\n")
    assert lines[:-1] == [f"before {first.pid}", f"after {second.pid}"]


def test_sleep_outside_a_workflow_or_in_a_step_is_a_plain_sleep(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    before = snapshot(db)
    durably.sleep(0.01)
    asyncio.run(durably.sleep_async(0.01))
    assert snapshot(db) == before

    @app.step
    def dozy() -> str:
        durably.sleep(0.01)
        return "ok"

    @app.workflow
    def wf() -> str:
        return dozy()

    assert wf.options(id="plain")() == "ok"
    assert [op[2] for op in ops(db, "plain")] == ["step"]


def test_async_sleep_is_durable(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.workflow
    async def anap() -> int:
        await durably.sleep_async(0.05)
        await durably.sleep_async(0)
        return 7

    assert asyncio.run(anap.options(id="anap")()) == 7
    assert [op[2] for op in ops(db, "anap")] == ["sleep", "sleep"]


def test_bad_sleep_and_timeout_arguments_change_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def wf(seconds: Any) -> str:
        try:
            durably.sleep(seconds)
        except durably.InvalidArgument:
            durably.sleep(0)  # the bad call took no step number: this is step 1
            return "refused"
        return "slept"

    before = snapshot(db)
    for bad in (-1, -0.5, "1", None, True, math.nan):
        with pytest.raises(durably.InvalidArgument):
            durably.sleep(bad)
        with pytest.raises(durably.InvalidArgument):
            asyncio.run(durably.sleep_async(bad))
    for timeout in (0, -1, "1", True, math.nan):
        with pytest.raises(durably.InvalidArgument):
            wf.options(timeout=timeout)
    assert snapshot(db) == before
    assert wf.options(id="bad")(-3) == "refused"
    assert [(op[0], op[2]) for op in ops(db, "bad")] == [(1, "sleep")]


def test_infinite_or_huge_waits_are_refused_with_a_clear_error(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """A wait that cannot be stored as a wake-up time must be refused like any bad input
    (InvalidArgument), not fail with a bare OverflowError or a database error."""
    errors: list[str] = []

    @app.workflow
    def wf(text: str) -> list[str]:
        seconds = float(text)
        seen = []
        for call in (
            lambda: durably.sleep(seconds),
            lambda: durably.recv("t", timeout=seconds),
            lambda: app.get_event("nobody", "k", timeout=seconds),
        ):
            try:
                call()
            except Exception as exc:
                seen.append(type(exc).__name__)
        return seen

    @app.workflow
    def plain() -> int:
        return 1

    before = snapshot(db)
    for seconds in (math.inf, 1e12):
        for call in (
            lambda s=seconds: app.get_event("nobody", "k", timeout=s),
            lambda s=seconds: plain.options(timeout=s).start(),
        ):
            try:
                call()
            except Exception as exc:
                errors.append(type(exc).__name__)
            else:
                errors.append("accepted")
    changed = snapshot(db) != before
    inside = wf.options(id="inf")("inf")
    assert (errors, inside, changed) == (["InvalidArgument"] * 4, ["InvalidArgument"] * 3, False)


# ------------------------------------------------------------------------ parking


def test_200_waiting_workflows_hold_no_threads(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    # Eight threads at most: if a wait held its thread, at most eight workflows could
    # ever reach their wait, and the other 192 would be queued behind them.
    app = make_app(park_after=0.1, max_threads=8)

    @app.workflow(name="inbox")
    def inbox(i: int) -> list[Any]:
        return [i, durably.recv("go", timeout=60)]

    app.launch()
    baseline = threading.active_count()
    handles = [inbox.options(id=f"in-{i:03}").start(i) for i in range(200)]

    def all_parked() -> bool:
        row = db.execute(
            "SELECT count(*) FROM workflows WHERE name = 'inbox' AND status = 'PENDING' "
            "AND executor_id IS NULL AND wait_kind = 'recv'"
        ).fetchone()
        return row is not None and row[0] == 200

    wait_until(all_parked, timeout=30, what="200 parked workflows")
    assert threading.active_count() <= baseline + 8 + 2
    for i in range(200):
        app.send(f"in-{i:03}", i * 10, topic="go")
    assert [h.result(timeout=30) for h in handles] == [[i, i * 10] for i in range(200)]
    statuses = db.execute("SELECT DISTINCT status FROM workflows").fetchall()
    assert statuses == [("SUCCESS",)]
    assert threading.active_count() <= baseline + 8 + 2


def test_sleeping_workflows_park_and_wake_on_time(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    # Two threads and 30 sleepers: all 30 are asleep at once only if sleeping frees the
    # thread. A slow fallback scan: each is woken by its own timer, not by polling.
    app = make_app(park_after=0.1, max_threads=2, poll_interval=30)

    @app.workflow(name="sleeper")
    def sleeper(i: int) -> int:
        durably.sleep(3)
        return i

    app.launch()
    handles = [sleeper.options(id=f"sl-{i:02}").start(i) for i in range(30)]

    def all_parked() -> bool:
        row = db.execute(
            "SELECT count(*) FROM workflows WHERE status = 'PENDING' AND executor_id IS NULL "
            "AND wait_kind = 'sleep'"
        ).fetchone()
        return row is not None and row[0] == 30

    wait_until(all_parked, timeout=2.5, what="30 sleepers parked at once")
    assert [h.result(timeout=15) for h in handles] == list(range(30))
    rows = db.execute(
        "SELECT w.completed_at, o.output FROM workflows w JOIN operations o "
        "ON o.workflow_id = w.id AND o.kind = 'sleep'"
    ).fetchall()
    assert len(rows) == 30  # one sleep recorded each
    assert all(completed >= datetime.fromisoformat(wake) for completed, wake in rows)


def test_async_workflows_park_too(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app(park_after=0.1)

    @app.workflow(name="ainbox")
    async def ainbox(i: int) -> list[Any]:
        return [i, await durably.recv_async("go", timeout=60)]

    app.launch()

    async def start_all() -> list[durably.WorkflowHandle[Any]]:
        return [await ainbox.options(id=f"ain-{i}").start_async(i) for i in range(50)]

    loop = app.engine.loop
    baseline = asyncio.run_coroutine_threadsafe(_task_count(), loop).result(timeout=5)
    handles = asyncio.run(start_all())
    wait_until(
        lambda: all(parked(db, h.id, "recv") for h in handles), what="50 async workflows parked"
    )
    # No task is left for each of them on the runtime loop (a few may come and go with
    # the connection pool).
    tasks = asyncio.run_coroutine_threadsafe(_task_count(), loop).result(timeout=5)
    assert tasks < baseline + 10
    for i, h in enumerate(handles):
        app.send(h.id, -i, topic="go")
    assert [h.result(timeout=15) for h in handles] == [[i, -i] for i in range(50)]


async def _task_count() -> int:
    return len(asyncio.all_tasks())


# ------------------------------------------------------------------------ timeouts


def test_timeout_cancels_the_workflow_and_its_children(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app(poll_interval=0.2)

    @app.workflow(name="grandchild")
    def grandchild() -> Any:
        return durably.recv("never", timeout=30)

    @app.workflow(name="child")
    def child() -> Any:
        return grandchild.start().result()

    @app.workflow(name="parent")
    def parent() -> Any:
        kid = child.options(timeout=60).start()  # its own timeout is later: parent's wins
        return kid.result()

    app.launch()
    handle = parent.options(id="p", timeout=1.0).start()
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=15)
    ids = ["p", "p-1", "p-1-1"]  # the parent, its child, and the child's child

    def final() -> list[dict[str, Any]] | None:
        rows = [workflow_row(db, wid) for wid in ids]
        return rows if all(r["status"] != "PENDING" for r in rows) else None

    rows = wait_until(final, what="the whole tree finished")
    # A timeout is a cancellation of the whole tree: no workflow of it records an error
    # (whichever of them notices the common deadline first).
    assert {r["id"]: r["status"] for r in rows} == dict.fromkeys(ids, "CANCELLED"), [
        (r["id"], r["status"], r["error"]) for r in rows
    ]
    parent_row = rows[0]
    assert parent_row["timeout_seconds"] == 1.0
    deadline = parent_row["deadline"]
    for row in rows:
        assert row["deadline"] == deadline  # the parent's deadline propagated
        assert row["completed_at"] >= deadline
        with pytest.raises(durably.WorkflowCancelled):
            app.handle(row["id"]).result(timeout=10)


def test_timeout_deadline_is_absolute_and_survives_a_restart(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        @app.step(name="maybe_crash")
        def maybe_crash() -> None:
            if state["crash"]:
                state["crash"] = False
                raise Crash()

        @app.workflow(name="timed")
        def timed() -> Any:
            maybe_crash()
            return durably.recv("never", timeout=30)

        return timed

    app2, _ = crash_then_recover(
        make_app, build, lambda wf: wf.options(id="t", timeout=3)(), poll_interval=0.2
    )
    deadline = workflow_row(db, "t")["deadline"]
    with pytest.raises(durably.WorkflowCancelled):
        app2.handle("t").result(timeout=15)
    row = workflow_row(db, "t")
    assert row["status"] == "CANCELLED"
    assert row["deadline"] == deadline  # not restarted by the recovery
    # Set once, 3 s after the start (two reads of the clock in one statement).
    assert abs(row["created_at"] + timedelta(seconds=3) - deadline) < timedelta(milliseconds=5)
    assert row["completed_at"] >= deadline


def test_timeout_of_a_parked_workflow_wakes_it_at_the_deadline(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    # The fallback scan is slow: the stored deadline itself wakes the parked workflow.
    app = make_app(park_after=0.1, poll_interval=30)

    @app.workflow(name="idle")
    def idle() -> Any:
        return durably.recv("never", timeout=60)

    app.launch()
    handle = idle.options(id="idle", timeout=1.5).start()
    row = wait_until(lambda: parked(db, "idle", "recv") and workflow_row(db, "idle"), what="parked")
    assert row["wake_at"] == row["deadline"]  # woken at its deadline, not the recv's
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=10)
    assert workflow_row(db, "idle")["status"] == "CANCELLED"


def test_timeout_cancels_an_async_step_in_flight(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    seen: list[str] = []

    @app.step
    async def slow() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "finished"

    @app.workflow
    async def hurried() -> str:
        return await slow()

    async def main() -> list[Any]:
        # Several at once: each must end with WorkflowCancelled, never a bare
        # asyncio.CancelledError, whatever the order of the timer and the notifications.
        handles = [
            await hurried.options(id=f"hurry-{i}", timeout=0.5).start_async() for i in range(20)
        ]
        return await asyncio.gather(
            *(h.result_async(timeout=10) for h in handles), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert [type(o).__name__ for o in outcomes] == ["WorkflowCancelled"] * 20
    assert seen == ["cancelled"] * 20
    statuses = db.execute("SELECT DISTINCT status FROM workflows").fetchall()
    assert statuses == [("CANCELLED",)]
    assert db.execute("SELECT count(*) FROM operations").fetchone() == (0,)


# ------------------------------------------------------------------------ wait_first


def test_wait_first_returns_the_first_to_finish(app: durably.App) -> None:
    @app.workflow
    def waiter(topic: str) -> Any:
        return durably.recv(topic, timeout=30)

    a = waiter.options(id="wa").start("a")
    b = waiter.options(id="wb").start("b")
    assert app.wait_first([a, b], timeout=0.2) is None
    app.send("wb", "B", topic="b")
    first = app.wait_first([a, b], timeout=10)
    assert first is b
    assert first.result() == "B"
    app.send("wa", "A", topic="a")
    assert asyncio.run(app.wait_first_async([a], timeout=10)) is a
    with pytest.raises(durably.InvalidArgument):
        app.wait_first([])
    with pytest.raises(durably.InvalidArgument):
        app.wait_first(["wa"])  # type: ignore[list-item]
    with pytest.raises(durably.InvalidArgument):
        app.wait_first([a], timeout=-1)


def test_wait_first_is_woken_by_a_notification(
    app: durably.App, db: psycopg.Connection[Any], slow_fallback: None
) -> None:
    @app.workflow
    def waiter(topic: str) -> Any:
        return durably.recv(topic, timeout=30)

    a = waiter.options(id="na").start("a")
    b = waiter.options(id="nb").start("b")
    # The waiter's own timeout (20 s) is under the fallback poll: only a notification
    # can end it within the 10 s the test waits.
    with background(lambda: app.wait_first([a, b], timeout=20)) as (thread, box):
        wait_until(lambda: watched(db, "na", "nb"), what="wait_first watching")
        app.send("nb", "B", topic="b")
        thread.join(timeout=10)
    assert box.get("value") is b, box
    app.send("na", "A", topic="a")
    assert a.result(timeout=10) == "A"


def test_wait_first_in_a_workflow_replays_its_recorded_answer(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """A replay asks wait_first again when both children have finished: it must get the
    child the first run saw finish first, not the first of the list that is finished."""
    app = make_app(park_after=0)

    @app.workflow(name="gated")
    def gated(topic: str) -> Any:
        return durably.recv(topic, timeout=60)

    @app.workflow(name="race")
    def race() -> list[Any]:
        a = gated.options(id="race-a").start("go")
        b = gated.options(id="race-b").start("go")
        first = app.wait_first([a, b], timeout=60)
        assert first is not None
        again = durably.recv("again", timeout=60)  # parks: the workflow is replayed
        return [first.id, again]

    app.launch()
    handle = race.options(id="race").start()
    wait_until(lambda: watched(db, "race-a", "race-b"), what="wait_first watching")
    app.send("race-b", "B", topic="go")
    wait_until(lambda: parked(db, "race", "recv"), what="the race parked after wait_first")
    app.send("race-a", "A", topic="go")
    assert app.handle("race-a").result(timeout=30) == "A"
    app.send("race", "now", topic="again")
    assert handle.result(timeout=30) == ["race-b", "now"]
    kinds = [(step.kind, step.name) for step in app.list_steps("race")]
    assert kinds == [
        ("child", "gated"), ("child", "gated"), ("wait_first", "wait_first"), ("recv", "recv:again")
    ]  # fmt: skip


def test_wait_first_recorded_before_it_was_recorded_replays_live(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """An execution recorded by a version whose wait_first took no position (the next
    operation holds the one after the children) replays it live, and its later
    operations keep their numbers, as durably.patched does for old executions."""
    app = make_app(park_after=0)

    @app.step(name="after")
    def after() -> str:
        return "stepped"

    @app.workflow(name="quick")
    def quick() -> str:
        return "done"

    @app.workflow(name="old")
    def old() -> list[Any]:
        child = quick.options(id="old-child").start()
        first = app.wait_first([child], timeout=60)
        assert first is not None
        return [first.id, after(), durably.recv("again", timeout=60)]

    app.launch()
    handle = old.options(id="old").start()
    wait_until(lambda: parked(db, "old", "recv"), what="old parked in recv")
    # As the earlier version recorded it: no wait_first at step 2, the rest moved up.
    db.execute("DELETE FROM operations WHERE workflow_id = 'old' AND step = 2")
    for step in (3, 4):
        db.execute("UPDATE operations SET step = %s WHERE workflow_id = 'old' AND step = %s",
                   (step - 1, step))  # fmt: skip
    app.send("old", "now", topic="again")
    assert handle.result(timeout=30) == ["old-child", "stepped", "now"]
    assert [step.kind for step in app.list_steps("old")] == ["child", "step", "recv"]


def test_result_from_another_process_is_woken_by_a_notification(
    app: durably.App, db: psycopg.Connection[Any], procs: Procs, slow_fallback: None
) -> None:
    runner = procs.worker(mode="start", wf="wp.waiter", id="remote", args=["go"])
    runner.expect("started")
    # Parked in the other process first (a message racing with its park is another
    # test's subject, in test_messages.py).
    wait_until(lambda: parked(db, "remote", "recv"), what="the remote workflow parked")
    with background(lambda: app.handle("remote").result(timeout=20)) as (thread, box):
        wait_until(lambda: watched(db, "remote"), what="the result waiter watching")
        app.send("remote", "hello", topic="go")
        thread.join(timeout=10)
    assert box.get("value") == ["got", "hello"], (
        box,
        workflow_row(db, "remote"),
        db.execute("SELECT * FROM messages").fetchall(),
        ops(db, "remote"),
    )
    assert runner.expect("done")["value"] == ["got", "hello"]


def test_result_waiter_is_woken_when_the_workflow_is_cancelled(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], slow_fallback: None
) -> None:
    """Cancelling is an outcome too: whoever waits for the result must learn it from the
    notification, as for any other outcome, not from the next poll."""
    app = make_app(park_after=0.1)

    @app.workflow(name="idle")
    def idle() -> Any:
        return durably.recv("never", timeout=60)

    app.launch()
    handle = idle.options(id="c1").start()
    wait_until(lambda: parked(db, "c1", "recv"), what="parked")
    with background(lambda: handle.result(timeout=20)) as (thread, box):
        wait_until(lambda: watched(db, "c1"), what="the result waiter watching")
        app.cancel("c1")
        thread.join(timeout=10)
    assert isinstance(box.get("error"), durably.WorkflowCancelled), (
        box or "still waiting 10 s after the cancel"
    )
