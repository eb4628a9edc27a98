"""Fencing: a run that lost its workflow can never write over the run that took it over.

The workflow row's ``epoch`` is bumped by every change of owner, and every checkpoint
and outcome write is conditional on the epoch the run started with.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import durably
from procs.harness import Workers
from support import wait_until

pytestmark = pytest.mark.timeout(60)


def snapshot(db: psycopg.Connection[Any], workflow_id: str) -> tuple[Any, ...]:
    """Everything stored about a workflow: its row and every recorded operation."""
    workflow = db.execute(
        "SELECT status, output, error, executor_id, epoch, recovery_attempts, updated_at, "
        "completed_at FROM workflows WHERE id = %s",
        (workflow_id,),
    ).fetchone()
    ops = db.execute(
        "SELECT step, name, kind, output, error, started_at, completed_at FROM operations "
        "WHERE workflow_id = %s ORDER BY step",
        (workflow_id,),
    ).fetchall()
    return workflow, ops


def test_paused_worker_resumed_after_takeover_writes_nothing(
    workers: Workers, db: psycopg.Connection[Any]
) -> None:
    # A runs "fenced": s1, then "tagged" (held at its gate in A), then s3. "tagged"
    # returns a value naming its process, so a write by A would be visible.
    a = workers.spawn("exec-A", lease=1.0, hold={"tagged"})
    b = workers.spawn("exec-B", lease=1.0)
    a.send(op="start", wf="fenced", id="wf-fence", args=[3])
    assert a.expect("started", id="wf-fence")["local"] is True
    wait_until(lambda: ("tagged", a.pid) in workers.lines(), what="A inside step 2")

    os.kill(a.pid, signal.SIGSTOP)  # A stops heartbeating inside step 2's body
    try:
        b.send(op="wait", id="wf-fence", timeout=30)
        result = b.expect("result", id="wf-fence", timeout=30)["value"]
        assert result == [6, f"6@{b.pid}", 60]
        before = snapshot(db, "wf-fence")
        assert before[0][0] == "SUCCESS" and before[0][3] == "exec-B"
        assert len(before[1]) == 3
        workers.open_gate("tagged")  # A's step 2 may now return ...
    finally:
        os.kill(a.pid, signal.SIGCONT)  # ... and A tries to record it
    # A's run fails with LostOwnership: its step write touched no row, and the body
    # saw the error (it logs "LOST" then re-raises, so no outcome is attempted).
    lost = a.expect("local", id="wf-fence")
    assert lost["type"] == "LostOwnership"
    wait_until(lambda: ("LOST", a.pid) in workers.lines(), what="A's body seeing LostOwnership")
    assert a.alive()

    after = snapshot(db, "wf-fence")
    assert after == before
    assert after[0][1] == result  # the output is B's
    assert after[1][1][3] == f"6@{b.pid}"  # step 2's checkpoint is B's

    lines = workers.lines()
    assert [pid for label, pid in lines if label == "tagged"] == [a.pid, b.pid]
    assert [pid for label, pid in lines if label == "s3"] == [b.pid]  # A stopped at step 2
    assert [pid for label, pid in lines if label == "s1"] == [a.pid]


@pytest.fixture
def gate() -> Iterator[tuple[threading.Event, threading.Event]]:
    """(entered, release): the held code sets ``entered`` and waits for ``release``."""
    entered, release = threading.Event(), threading.Event()
    yield entered, release
    release.set()  # never leave a workflow thread blocked


def bump_epoch(db: psycopg.Connection[Any], workflow_id: str) -> None:
    """What a takeover does to the row: another owner, a higher epoch.

    The usurper is a live executor (fresh heartbeat, long lease), so nothing takes the
    workflow back from it during the test.
    """
    db.execute(
        "INSERT INTO executors (id, hostname, pid, lease_seconds) "
        "VALUES ('usurper', 'elsewhere', 1, 3600) ON CONFLICT (id) DO NOTHING"
    )
    cur = db.execute(
        "UPDATE workflows SET epoch = epoch + 1, executor_id = 'usurper' WHERE id = %s",
        (workflow_id,),
    )
    assert cur.rowcount == 1


def test_step_checkpoint_and_outcome_are_fenced_by_epoch(
    make_app: Any, db: psycopg.Connection[Any], gate: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = gate
    app = make_app(lease=30.0)
    ran: list[str] = []

    @app.step(name="first")
    def first(x: int) -> int:
        ran.append("first")
        return x * 2

    @app.step(name="held")
    def held(x: int) -> int:
        ran.append("held")
        entered.set()
        assert release.wait(20)
        return x + 1

    seen: list[BaseException] = []

    @app.workflow(name="in_step")
    def in_step(x: int) -> int:
        a = first(x)
        try:
            return held(a)
        except durably.DurablyError as exc:
            seen.append(exc)
            raise

    handle = in_step.options(id="wf-in-step").start(5)
    local = app.engine.local_future(handle.id)
    assert local is not None
    wait_until(entered.is_set, what="the workflow inside step 2")
    bump_epoch(db, handle.id)
    before = snapshot(db, handle.id)
    release.set()

    error = local.exception(timeout=20)
    assert isinstance(error, durably.LostOwnership)
    assert len(seen) == 1 and isinstance(seen[0], durably.LostOwnership)
    assert ran == ["first", "held"]
    after = snapshot(db, handle.id)
    assert after == before
    workflow, ops = after
    assert [op[1] for op in ops] == ["first"]  # step 2's checkpoint was not written
    assert workflow[0] == "PENDING" and workflow[1] is None and workflow[2] is None
    assert workflow[3] == "usurper"


def test_outcome_is_fenced_by_epoch(
    make_app: Any, db: psycopg.Connection[Any], gate: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = gate
    app = make_app(lease=30.0)

    @app.step(name="only")
    def only(x: int) -> int:
        return x * 3

    @app.workflow(name="late")
    def late(x: int) -> int:
        value = only(x)
        entered.set()  # every step is recorded: only the outcome remains
        assert release.wait(20)
        return value

    handle = late.options(id="wf-late").start(4)
    local = app.engine.local_future(handle.id)
    assert local is not None
    wait_until(entered.is_set, what="the workflow past its last step")
    bump_epoch(db, handle.id)
    before = snapshot(db, handle.id)
    release.set()

    assert isinstance(local.exception(timeout=20), durably.LostOwnership)
    after = snapshot(db, handle.id)
    assert after == before
    workflow, ops = after
    assert workflow[0] == "PENDING" and workflow[1] is None and workflow[7] is None
    assert [op[1] for op in ops] == ["only"]


def lease_expired(db: psycopg.Connection[Any], executor_id: str) -> bool:
    row = db.execute(
        "SELECT heartbeat_at + make_interval(secs => lease_seconds) < now() FROM executors "
        "WHERE id = %s",
        (executor_id,),
    ).fetchone()
    return bool(row and row[0])


def test_superseded_process_with_same_executor_id_stays_fenced_out(
    workers: Workers, db: psycopg.Connection[Any]
) -> None:
    # An executor ID is restarted while its old process is not dead but paused past its
    # lease (a frozen VM, a long GC pause). The new process recovers the workflow at once
    # (launch), and the old one, when it wakes up, must neither write nor take the
    # workflow back: its heartbeat finds the ID taken and it stops.
    old = workers.spawn("exec-X", lease=1.0, hold={"tagged"})
    old.send(op="start", wf="fenced", id="wf-zombie", args=[2])
    wait_until(lambda: ("tagged", old.pid) in workers.lines(), what="old process in step 2")
    os.kill(old.pid, signal.SIGSTOP)
    try:
        # While the paused process's lease runs, its ID is refused to others.
        wait_until(lambda: lease_expired(db, "exec-X"), what="the paused process's lease")
        # The new process holds the workflow at step 3 for as long as the test needs.
        new = workers.spawn("exec-X", lease=1.0, hold={"s3"})
        wait_until(lambda: ("s3", new.pid) in workers.lines(), what="new process in step 3")
        workers.open_gate("tagged")
    finally:
        os.kill(old.pid, signal.SIGCONT)
    assert old.expect("local", id="wf-zombie")["type"] == "LostOwnership"
    wait_until(lambda: "was taken by another process" in old.stderr(), what="the old's error")
    owned = snapshot(db, "wf-zombie")
    # epoch: 1 when created, 2 once recovered by the new process; more means it moved again
    assert owned[0][4] == 2, f"the workflow changed owner again: {owned[0]}"

    # Give the old process's executor loop time for many scans (its scan period is under
    # a lease; a workflow counts as orphaned once untouched for a lease), observing the
    # database clock, and stop early if the workflow moves.
    def moved_or_waited() -> bool:
        row = db.execute(
            "SELECT epoch <> 2 OR updated_at < clock_timestamp() - interval '4 seconds' "
            "FROM workflows WHERE id = 'wf-zombie'"
        ).fetchone()
        return bool(row and row[0])

    wait_until(moved_or_waited, timeout=20, what="four leases to pass")
    assert ("s3", old.pid) not in workers.lines(), "the superseded process ran step 3"
    assert snapshot(db, "wf-zombie") == owned, "the superseded process took it back"

    workers.open_gate("s3")
    new.send(op="wait", id="wf-zombie", timeout=20)
    assert new.expect("result", id="wf-zombie")["value"] == [4, f"4@{new.pid}", 40]
    assert [pid for label, pid in workers.lines() if label == "s3"] == [new.pid]


# ------------------------------------------------------------ one run per process


def test_a_superseded_run_exits_before_the_new_run_starts(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """Resuming a workflow that still runs here gives it a new epoch: the old run is
    fenced at its checkpoint and the new run waits for it, so the step's two bodies
    never overlap in this process."""
    gate = threading.Event()
    runs: list[tuple[str, float]] = []
    lock = threading.Lock()

    @app.step
    def slow() -> str:
        with lock:
            runs.append(("start", time.monotonic()))
        gate.wait(30)
        with lock:
            runs.append(("end", time.monotonic()))
        return "ok"

    @app.workflow
    def wf() -> str:
        return slow()

    handle = wf.start()
    wait_until(lambda: len(runs) == 1, what="the first body started")
    app.resume(handle.id)  # a new epoch: the running one is now stale
    # The new run is claimed here and waits for the old one instead of starting a body.
    wait_until(
        lambda: (
            db.execute("SELECT epoch FROM workflows WHERE id = %s", (handle.id,)).fetchone() == (3,)
        ),
        what="the resumed workflow claimed again",
    )
    assert [kind for kind, _ in runs] == ["start"]
    gate.set()
    assert handle.result(timeout=30) == "ok"
    kinds = [kind for kind, _ in runs]
    assert kinds == ["start", "end", "start", "end"], kinds
    # The second body started after the first ended: never two at once.
    assert runs[2][1] >= runs[1][1]
    rows = db.execute(
        "SELECT step, epoch FROM operations WHERE workflow_id = %s", (handle.id,)
    ).fetchall()
    assert rows == [(1, 3)]
