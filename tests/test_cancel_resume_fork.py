"""Cancel (and cascade to children), resume from the last checkpoint, and fork from a
step: completed steps never run again, copied steps are not re-run."""

from __future__ import annotations

import asyncio
import collections
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from support import wait_until
from waitprocs.util import (
    Crash,
    Procs,
    background,
    crash_then_recover,
    ops,
    snapshot,
    workflow_row,
)

pytestmark = pytest.mark.timeout(60)


def waiting(db: psycopg.Connection[Any], workflow_id: str, step: int) -> bool:
    """Whether the workflow's wait at ``step`` started (it stored its deadline)."""
    row = db.execute("SELECT wait_step FROM workflows WHERE id = %s", (workflow_id,)).fetchone()
    return row is not None and row[0] == step


def status(db: psycopg.Connection[Any], workflow_id: str) -> str:
    return str(workflow_row(db, workflow_id)["status"])


# ------------------------------------------------------------------------ cancel


def test_cancel_stops_at_the_next_step_and_resume_continues(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    runs: collections.Counter[str] = collections.Counter()
    inside, release = threading.Event(), threading.Event()

    @app.step(name="s1")
    def s1() -> int:
        runs["s1"] += 1
        return 1

    @app.step(name="s2")
    def s2() -> int:
        runs["s2"] += 1
        inside.set()
        assert release.wait(10)
        return 2

    @app.step(name="s3")
    def s3() -> int:
        runs["s3"] += 1
        return 3

    @app.workflow
    def three() -> list[int]:
        return [s1(), s2(), s3()]

    handle = three.options(id="c3").start()
    assert inside.wait(10)
    app.cancel("c3")
    assert status(db, "c3") == "CANCELLED"  # at once, while step 2 still runs
    release.set()
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=10)
    with pytest.raises(durably.WorkflowCancelled):
        app.handle("c3").result(timeout=10)  # also when read from the database
    assert runs == {"s1": 1, "s2": 1}  # step 3 never started
    assert [op[1] for op in ops(db, "c3")] == ["s1"]  # step 2's result was not recorded

    resumed = app.resume("c3")
    assert resumed.result(timeout=10) == [1, 2, 3]
    assert runs == {"s1": 1, "s2": 2, "s3": 1}  # step 1 not re-run
    assert status(db, "c3") == "SUCCESS"
    assert [op[1] for op in ops(db, "c3")] == ["s1", "s2", "s3"]


def test_cancel_wakes_a_waiting_workflow(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.workflow
    def sleeper() -> str:
        durably.sleep(30)  # in place: under park_after
        return "woke"

    @app.workflow
    def receiver() -> Any:
        return durably.recv("never", timeout=30)

    handles = [sleeper.options(id="cs").start(), receiver.options(id="cr").start()]
    wait_until(lambda: len(ops(db, "cs")) == 1, what="sleeping")
    wait_until(lambda: waiting(db, "cr", 1), what="receiving")
    app.cancel("cs")
    asyncio.run(app.cancel_async("cr"))
    for handle in handles:
        with pytest.raises(durably.WorkflowCancelled):
            handle.result(timeout=10)


def test_cancel_reaches_a_workflow_running_in_another_process(
    app: durably.App, db: psycopg.Connection[Any], procs: Procs, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    # The other process sleeps 8 s in place (under its park_after) between two steps.
    runner = procs.worker(mode="start", wf="wp.sleeper", id="far", args=[8.0], effects=str(effects))
    runner.expect("started")
    wait_until(lambda: [op for op in ops(db, "far") if op[2] == "sleep"], what="sleeping")
    app.cancel("far")
    failed = runner.expect("failed", timeout=6)  # woken by the cancel, not by the sleep's end
    assert failed["type"] == "WorkflowCancelled"
    assert status(db, "far") == "CANCELLED"
    assert effects.read_text().split() == ["before", str(runner.pid)]  # "after" never ran
    assert [op[2] for op in ops(db, "far")] == ["step", "sleep"]


def test_cancel_cancels_an_async_step_in_flight(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    seen: list[str] = []
    started = threading.Event()

    @app.step
    async def slow() -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "finished"

    @app.workflow
    async def flow() -> str:
        return await slow()

    async def main() -> None:
        handle = await flow.options(id="ac").start_async()
        await asyncio.to_thread(started.wait, 10)
        await app.cancel_async("ac")
        with pytest.raises(durably.WorkflowCancelled):
            await handle.result_async(timeout=10)

    asyncio.run(main())
    assert seen == ["cancelled"]
    assert status(db, "ac") == "CANCELLED"
    assert ops(db, "ac") == []


def test_a_cancelled_workflow_stays_cancelled_when_its_body_returns(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    inside, release = threading.Event(), threading.Event()

    @app.step
    def first() -> int:
        return 1

    @app.workflow
    def stubborn() -> str:
        first()
        inside.set()
        release.wait(10)  # plain Python: no durable call until the end
        return "finished anyway"

    handle = stubborn.options(id="st").start()
    assert inside.wait(10)
    app.cancel("st")
    release.set()
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=10)
    row = workflow_row(db, "st")
    assert (row["status"], row["output"], row["error"]) == ("CANCELLED", None, None)


def test_cancel_with_children_cascades(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.workflow(name="leaf")
    def leaf(topic: str) -> Any:
        return durably.recv(topic, timeout=30)

    @app.workflow(name="mid")
    def mid() -> Any:
        return leaf.start("deep").result()

    @app.workflow(name="root")
    def root() -> list[Any]:
        a = leaf.start("a")
        b = mid.start()
        return [a.result(), b.result()]

    handle = root.options(id="root").start()
    tree = ["root", "root-1", "root-2", "root-2-1"]
    wait_until(lambda: waiting(db, "root-1", 1) and waiting(db, "root-2-1", 1), what="leaves")
    app.cancel("root", children=True)
    assert {wid: status(db, wid) for wid in tree} == dict.fromkeys(tree, "CANCELLED")
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=10)
    for wid in tree:
        with pytest.raises(durably.WorkflowCancelled):
            app.handle(wid).result(timeout=10)


def test_cancel_without_children_leaves_them_running(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="kid")
    def kid() -> Any:
        return durably.recv("go", timeout=30)

    @app.step(name="after")
    def after() -> str:
        return "after"

    @app.workflow(name="parent")
    def parent() -> list[Any]:
        value = kid.start().result()
        return [value, after()]  # the next durable call after the cancel stops it

    handle = parent.options(id="par").start()
    wait_until(lambda: waiting(db, "par-1", 1), what="the child waiting")
    app.cancel("par")
    assert (status(db, "par"), status(db, "par-1")) == ("CANCELLED", "PENDING")
    app.send("par-1", "still here", topic="go")
    assert app.handle("par-1").result(timeout=10) == "still here"
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=10)
    assert [op[2] for op in ops(db, "par")] == ["child"]  # "after" never ran


def test_cancel_of_finished_or_unknown_workflows(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def done() -> str:
        return "done"

    @app.workflow
    def broken() -> str:
        raise RuntimeError("broken")

    assert done.options(id="done")() == "done"
    with pytest.raises(RuntimeError):
        broken.options(id="broken")()
    before = snapshot(db)
    app.cancel("done")  # nothing to cancel: unchanged
    app.cancel("broken", children=True)
    with pytest.raises(durably.WorkflowNotFound, match="ghost"):
        app.cancel("ghost")
    with pytest.raises(durably.InvalidArgument):
        app.cancel(5)  # type: ignore[arg-type]
    assert snapshot(db) == before
    assert app.handle("done").result() == "done"


# ------------------------------------------------------------------------ resume


def test_resume_of_a_dead_lettered_workflow_continues_from_its_last_checkpoint(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    runs: collections.Counter[str] = collections.Counter()
    crashes = {"left": 2}
    crashed = threading.Event()

    def build(app: durably.App) -> Any:
        @app.step(name="first")
        def first() -> int:
            runs["first"] += 1
            return 1

        @app.step(name="fragile")
        def fragile() -> int:
            runs["fragile"] += 1
            if crashes["left"]:
                crashes["left"] -= 1
                crashed.set()
                raise Crash()
            return 2

        @app.workflow(name="doomed", max_recovery_attempts=1)
        def doomed() -> list[int]:
            return [first(), fragile()]

        return doomed

    # Crash once in the first process and once more in the recovery: the next recovery
    # finds it over its limit and dead-letters it.
    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="dl")())
    assert crashed.wait(10)
    wait_until(lambda: runs["fragile"] == 2, what="the second crash")
    executor = app2.executor_id
    app2.shutdown(grace=0)
    app3 = make_app(executor_id=executor)
    build(app3)
    app3.launch()
    assert status(db, "dl") == "DEAD_LETTER"
    with pytest.raises(durably.WorkflowDeadLettered):
        app3.handle("dl").result(timeout=10)

    resumed = app3.resume("dl")
    assert resumed.result(timeout=10) == [1, 2]
    assert runs == {"first": 1, "fragile": 3}
    row = workflow_row(db, "dl")
    assert (row["status"], row["recovery_attempts"]) == ("SUCCESS", 0)


def test_resume_of_a_stuck_workflow_runs_it_again(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """A PENDING workflow its live owner is not running (its run died in the process,
    and the owner's lease is long): resume runs it from its last checkpoint now."""
    app = make_app(lease=600)
    runs: collections.Counter[str] = collections.Counter()

    @app.step(name="first")
    def first() -> int:
        runs["first"] += 1
        return 1

    @app.step(name="dies_once")
    def dies_once() -> int:
        runs["dies_once"] += 1
        if runs["dies_once"] == 1:
            raise Crash()
        return 2

    @app.workflow(name="stuck")
    def stuck() -> list[int]:
        return [first(), dies_once()]

    app.launch()
    with pytest.raises(Crash):
        stuck.options(id="stk")()
    assert status(db, "stk") == "PENDING"
    handle = app.resume("stk")
    try:
        result = handle.result(timeout=5)
    except durably.ResultTimeout:
        pytest.fail(f"resume left the stuck workflow as it was: {workflow_row(db, 'stk')}")
    assert result == [1, 2]
    assert runs == {"first": 1, "dies_once": 2}


def test_resume_of_a_finished_workflow_changes_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def done(x: int) -> int:
        return x * 2

    @app.workflow
    def broken() -> str:
        raise KeyError("broken")

    assert done.options(id="fin")(21) == 42
    with pytest.raises(KeyError):
        broken.options(id="err")()
    before = snapshot(db)
    assert app.resume("fin").result(timeout=5) == 42
    with pytest.raises(KeyError):
        asyncio.run(app.resume_async("err")).result(timeout=5)
    with pytest.raises(durably.WorkflowNotFound):
        app.resume("ghost")
    with pytest.raises(durably.InvalidArgument):
        app.resume("")
    assert snapshot(db) == before


def test_resume_of_delayed_queued_work_starts_it_now(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """DESIGN.md: resume "starts an ENQUEUED/DELAYED one now", an hour early included."""

    @app.workflow
    def later(x: int) -> int:
        return x + 1

    app.queue("resumed-later")
    handle = later.options(queue="resumed-later", delay=3600).start(1)
    assert handle.status() is durably.Status.DELAYED
    app.resume(handle.id)
    assert handle.result(timeout=30) == 2


def test_resume_of_a_cancelled_parked_workflow(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app(park_after=0.1)

    @app.workflow(name="inbox")
    def inbox() -> Any:
        return durably.recv("go", timeout=30)

    app.launch()
    inbox.options(id="pk").start()
    wait_until(
        lambda: (
            workflow_row(db, "pk")["executor_id"] is None
            and workflow_row(db, "pk")["wait_kind"] == "recv"
        ),
        what="parked",
    )
    app.cancel("pk")
    with pytest.raises(durably.WorkflowCancelled):
        app.handle("pk").result(timeout=10)
    handle = app.resume("pk")
    wait_until(lambda: status(db, "pk") == "PENDING", what="pending again")
    app.send("pk", "back", topic="go")
    assert handle.result(timeout=10) == "back"


def test_resume_while_the_cancelled_run_is_still_in_a_step(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Cancel, then resume at once, while the cancelled run is still inside a step: the
    old run is fenced out when it ends, and the resumed run keeps its workflow (it is
    not mistaken for an orphan and run a third time)."""
    lease = 1.0
    app = make_app(lease=lease)
    gates: list[threading.Event] = []

    @app.step(name="first")
    def first() -> int:
        return 1

    @app.step(name="gated")
    def gated() -> int:
        gate = threading.Event()
        gates.append(gate)
        assert gate.wait(20)
        return 2

    @app.workflow(name="twice")
    def twice() -> list[int]:
        return [first(), gated()]

    app.launch()
    twice.options(id="rr").start()
    wait_until(lambda: len(gates) == 1, what="the first run inside the step")
    app.cancel("rr")
    app.resume("rr")
    wait_until(lambda: len(gates) == 2, what="the resumed run inside the step")
    epoch = workflow_row(db, "rr")["epoch"]
    gates[0].set()  # the cancelled run ends: its checkpoint is refused (fenced)
    # Let the executor loop run its orphan scan several times (it claims workflows of its
    # own that are not running here and untouched for a lease): 9 heartbeats, one every
    # lease/3, span about 5 of those scans.
    beat = db.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    wait_until(
        lambda: db.execute(
            "SELECT min(heartbeat_at) > %s + make_interval(secs => %s) FROM executors",
            (beat, 3 * lease),
        ).fetchone()[0],  # type: ignore[index]
        what="three leases of executor activity",
    )
    assert len(gates) == 2, "the resumed run was claimed again as an orphan and re-run"
    assert workflow_row(db, "rr")["epoch"] == epoch
    gates[1].set()
    assert app.handle("rr").result(timeout=10) == [1, 2]
    assert workflow_row(db, "rr")["recovery_attempts"] == 0


# ------------------------------------------------------------------------ fork


def test_fork_from_step_3_of_5_reruns_exactly_steps_3_to_5(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    runs: collections.Counter[int] = collections.Counter()

    @app.step(name="numbered")
    def numbered(n: int, x: int) -> int:
        runs[n] += 1
        return x + n

    @app.workflow(name="five")
    def five(x: int) -> list[int]:
        return [numbered(n, x) for n in range(1, 6)]

    assert five.options(id="orig")(100) == [101, 102, 103, 104, 105]
    forked = app.fork("orig", from_step=3)
    assert forked.id != "orig"
    assert forked.result(timeout=10) == [101, 102, 103, 104, 105]
    assert runs == {1: 1, 2: 1, 3: 2, 4: 2, 5: 2}
    (info,) = app.list_workflows(ids=[forked.id])
    assert (info.forked_from, info.name, info.status) == ("orig", "five", durably.Status.SUCCESS)
    assert info.inputs == workflow_row(db, "orig")["inputs"]
    original, copy = app.list_steps("orig"), app.list_steps(forked.id)
    assert [s.step for s in copy] == [1, 2, 3, 4, 5]
    assert [(s.started_at, s.completed_at) for s in copy[:2]] == [
        (s.started_at, s.completed_at) for s in original[:2]
    ]  # copied, not re-run
    assert all(c.started_at > o.completed_at for c, o in zip(copy[2:], original[2:], strict=True))
    assert app.list_workflows(ids=["orig"])[0].forked_from is None

    named = asyncio.run(app.fork_async("orig", from_step=5, new_id="fork-5"))
    assert named.id == "fork-5"
    assert named.result(timeout=10) == [101, 102, 103, 104, 105]
    assert runs == {1: 1, 2: 1, 3: 2, 4: 2, 5: 3}


def test_fork_sees_events_and_stream_entries_written_before_the_fork_point(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="publisher")
    def publisher() -> str:
        durably.set_event("stage", "one")  # 1
        durably.write_stream("s", "first")  # 2
        durably.recv("go", timeout=10)  # 3: the fork point
        durably.set_event("stage", "two")  # 4
        durably.write_stream("s", "second")  # 5
        durably.close_stream("s")  # 6
        return "published"

    handle = publisher.options(id="pub").start()
    app.send("pub", None, topic="go")
    assert handle.result(timeout=10) == "published"

    forked = app.fork("pub", from_step=3)
    wait_until(lambda: waiting(db, forked.id, 3), what="the fork waiting at step 3")
    # Before the fork point: visible at once, without re-running anything.
    assert app.get_event(forked.id, "stage", timeout=0) == "one"
    assert app.get_all_events(forked.id) == {"stage": "one"}
    reader = app.read_stream(forked.id, "s")
    assert next(reader) == "first"
    app.send(forked.id, None, topic="go")
    assert list(reader) == ["second"]
    assert forked.result(timeout=10) == "published"
    assert app.get_event(forked.id, "stage", timeout=0) == "two"
    # The original is untouched.
    assert list(app.read_stream("pub", "s")) == ["first", "second"]
    assert app.get_all_events("pub") == {"stage": "two"}


def test_bad_fork_arguments_are_refused_and_change_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="small")
    def small() -> int:
        return 1

    assert small.options(id="src")() == 1
    assert small.options(id="taken")() == 1
    before = snapshot(db)
    for bad in (0, -1, "3", 2.0, True, None):
        with pytest.raises(durably.InvalidArgument):
            app.fork("src", from_step=bad)  # type: ignore[arg-type]
    with pytest.raises(durably.WorkflowNotFound, match="ghost"):
        app.fork("ghost", from_step=1)
    with pytest.raises(durably.InvalidArgument, match="taken"):
        app.fork("src", from_step=1, new_id="taken")
    with pytest.raises(durably.InvalidArgument):
        app.fork("src", from_step=1, new_id="")
    assert snapshot(db) == before


def test_a_fork_of_a_forked_workflow_and_past_the_last_step(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    runs: collections.Counter[str] = collections.Counter()

    @app.step(name="tick")
    def tick(label: str) -> str:
        runs[label] += 1
        return label

    @app.workflow(name="two")
    def two() -> list[str]:
        return [tick("a"), tick("b")]

    assert two.options(id="g0")() == ["a", "b"]
    # Past the last step: everything is copied, nothing runs again.
    child = app.fork("g0", from_step=10, new_id=f"g1-{uuid.uuid4().hex[:4]}")
    assert child.result(timeout=10) == ["a", "b"]
    assert runs == {"a": 1, "b": 1}
    grandchild = app.fork(child.id, from_step=2)
    assert grandchild.result(timeout=10) == ["a", "b"]
    assert runs == {"a": 1, "b": 2}
    (info,) = app.list_workflows(ids=[grandchild.id])
    assert info.forked_from == child.id


def test_resume_while_waiting_for_the_result_in_another_thread(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    # A waiter that started before the cancel sees the cancellation; one started after
    # the resume sees the result.
    @app.workflow(name="inbox")
    def inbox() -> Any:
        return durably.recv("go", timeout=30)

    handle = inbox.options(id="rw").start()
    wait_until(lambda: waiting(db, "rw", 1), what="waiting")
    with background(lambda: app.handle("rw").result(timeout=10)) as (thread, box):
        app.cancel("rw")
        thread.join(timeout=10)
    assert isinstance(box.get("error"), durably.WorkflowCancelled), box
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=10)
    app.resume("rw")
    wait_until(lambda: status(db, "rw") == "PENDING", what="pending again")
    app.send("rw", "after resume", topic="go")
    assert app.handle("rw").result(timeout=10) == "after resume"
