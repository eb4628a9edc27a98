"""Crash tests: worker processes are SIGKILLed at chosen points, side effects are counted.

Each step body appends "<label> <pid>" to an effects file before it does anything else,
so the file tells how many times each body really ran and in which process. Steps are
held at a gate (a file the test creates) to park a worker exactly where it is killed.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from procs.harness import Workers
from procs.workflows import build, expected_three
from support import wait_until

pytestmark = pytest.mark.timeout(60)


def operations(db: psycopg.Connection[Any], workflow_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT step, name, kind, output, error FROM operations WHERE workflow_id = %s "
        "ORDER BY step",
        (workflow_id,),
    ).fetchall()


def workflow_row(db: psycopg.Connection[Any], workflow_id: str) -> dict[str, Any]:
    cur = db.execute(
        "SELECT status, output, executor_id, epoch, recovery_attempts FROM workflows WHERE id = %s",
        (workflow_id,),
    )
    row = cur.fetchone()
    assert row is not None, f"no workflow {workflow_id}"
    return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def test_killed_worker_restarted_with_same_executor_id_resumes_after_last_step(
    workers: Workers, db: psycopg.Connection[Any], pg_url: str, schema: str, tmp_path: Path
) -> None:
    # A long lease: recovery below must come from the launch itself, not from expiry.
    first = workers.spawn("crash-exec", lease=30.0, hold={"s3"})
    first.send(op="start", wf="three", id="wf-crash", args=[7])
    wait_until(lambda: len(operations(db, "wf-crash")) == 2, what="steps 1 and 2 recorded")
    wait_until(lambda: ("s3", first.pid) in workers.lines(), what="step 3 running in worker 1")
    first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    before = workflow_row(db, "wf-crash")
    assert before["status"] == "PENDING"
    assert (before["epoch"], before["recovery_attempts"]) == (1, 0)

    second = workers.spawn("crash-exec", lease=30.0)  # returns once launched
    # Claimed during launch, before "ready": at once, whatever the lease.
    claimed = workflow_row(db, "wf-crash")
    assert claimed["epoch"] == 2 and claimed["recovery_attempts"] == 1
    assert claimed["executor_id"] == "crash-exec"
    second.send(op="wait", id="wf-crash", timeout=20)
    result = second.expect("result", id="wf-crash")["value"]

    lines = workers.lines()
    by_label = {label: [pid for lab, pid in lines if lab == label] for label in ("s1", "s2", "s3")}
    # Recorded steps never run again: steps 1 and 2 ran once, in the first worker.
    assert by_label["s1"] == [first.pid]
    assert by_label["s2"] == [first.pid]
    # Step 3 was in flight (its body had started, its checkpoint not written) when the
    # worker died: at-least-once, so it runs again. In general that is once or twice;
    # the gate makes it exactly twice here: the killed attempt and the recovered one.
    assert by_label["s3"] == [first.pid, second.pid]

    final = workflow_row(db, "wf-crash")
    assert final["status"] == "SUCCESS"
    assert final["output"] == result
    assert [row[:3] for row in operations(db, "wf-crash")] == [
        (1, "s1", "step"),
        (2, "s2", "step"),
        (3, "s3", "step"),
    ]

    # The same workflow, run in this process without interruption, gives the same result
    # and records the same operations.
    reference = build(
        pg_url, schema, executor_id="reference", lease=30.0, effects=tmp_path / "ref.txt"
    )
    try:
        expected = reference.workflows["three"].options(id="wf-reference")(7)
    finally:
        reference.app.shutdown(grace=5)
    assert result == expected == expected_three(7)
    assert operations(db, "wf-crash") == operations(db, "wf-reference")


def test_live_executor_takes_over_workflow_of_killed_executor(
    workers: Workers, db: psycopg.Connection[Any]
) -> None:
    survivor = workers.spawn("exec-B", lease=1.0)  # idle, running before A dies
    doomed = workers.spawn("exec-A", lease=1.0, hold={"s2"})
    doomed.send(op="start", wf="three", id="wf-takeover", args=[5])
    wait_until(lambda: ("s2", doomed.pid) in workers.lines(), what="step 2 running in A")
    assert [row[1] for row in operations(db, "wf-takeover")] == ["s1"]
    survivor.send(op="wait", id="wf-takeover", timeout=30)
    doomed.kill()

    # B finishes it once A's lease expired: no restart of anything.
    result = survivor.expect("result", id="wf-takeover", timeout=30)["value"]
    assert result == expected_three(5)
    assert survivor.alive()
    row = workflow_row(db, "wf-takeover")
    assert row["status"] == "SUCCESS"
    assert row["executor_id"] == "exec-B"
    assert row["output"] == result
    assert row["epoch"] == 2 and row["recovery_attempts"] == 1

    lines = workers.lines()
    assert [pid for label, pid in lines if label == "s1"] == [doomed.pid]
    # Step 2 was in flight in A when it died, so B runs it again (at-least-once).
    assert [pid for label, pid in lines if label == "s2"] == [doomed.pid, survivor.pid]
    assert [pid for label, pid in lines if label == "s3"] == [survivor.pid]
    assert len(operations(db, "wf-takeover")) == 3


def test_a_workflow_that_progresses_between_crashes_is_never_dead_lettered(
    workers: Workers, db: psycopg.Connection[Any]
) -> None:
    # Each run records one more step and then kills its worker: five crashes, more than
    # max_recovery_attempts (2), but each recovery went on from further along.
    worker = workers.spawn("march-exec", max_recovery_attempts=2)
    worker.send(op="start", wf="marching", id="wf-march", args=[5])
    crashes = 0
    while True:
        assert worker.wait_exit() == -signal.SIGKILL
        crashes += 1
        assert workflow_row(db, "wf-march")["status"] == "PENDING"
        worker = workers.spawn("march-exec", max_recovery_attempts=2, ready=False)
        if crashes == 5:
            break
    worker.send(op="wait", id="wf-march", timeout=30)
    assert worker.expect("result", id="wf-march")["value"] == 5
    row = workflow_row(db, "wf-march")
    assert (row["status"], row["recovery_attempts"]) == ("SUCCESS", 1)
    counts = workers.counts()
    assert [counts[f"advance{i}"] for i in range(1, 6)] == [1] * 5  # recorded once each
    assert [counts[f"die{i}"] for i in range(1, 6)] == [1] * 5


def test_workflow_that_keeps_crashing_its_worker_is_dead_lettered(
    workers: Workers, db: psycopg.Connection[Any], make_app: Any
) -> None:
    # "doomed" records step 1, then its step "suicide" SIGKILLs its own process.
    worker = workers.spawn("dl-exec", max_recovery_attempts=2)
    worker.send(op="start", wf="doomed", id="wf-doomed", args=[1])
    assert worker.wait_exit() == -signal.SIGKILL
    crashes = 1
    for _ in range(6):
        # Launch claims the executor's workflows before it prints "ready": then either
        # the workflow was dead-lettered, or its recovery is running and kills the
        # worker (possibly before "ready" is printed).
        worker = workers.spawn("dl-exec", max_recovery_attempts=2, ready=False)
        if worker.ready_or_exit() and workflow_row(db, "wf-doomed")["status"] == "DEAD_LETTER":
            break
        assert worker.wait_exit() == -signal.SIGKILL
        crashes += 1
    row = workflow_row(db, "wf-doomed")
    assert row["status"] == "DEAD_LETTER"
    # The first run and max_recovery_attempts (2) recoveries crashed; the third
    # recovery was refused.
    assert crashes == 3
    assert row["recovery_attempts"] == 3
    counts = workers.counts()
    assert counts["suicide"] == 3
    assert counts["s1"] == 1  # recorded once, replayed by every recovery

    # Its result is a clear error, here and in the surviving worker.
    observer = make_app()  # no workflows registered: it only looks
    with pytest.raises(durably.WorkflowDeadLettered) as caught:
        observer.handle("wf-doomed").result(timeout=10)
    assert caught.value.attempts == 2
    worker.send(op="wait", id="wf-doomed", timeout=10)
    error = worker.expect("error", id="wf-doomed")
    assert error["type"] == "WorkflowDeadLettered"

    # The worker that refused it runs other workflows normally.
    worker.send(op="run", wf="three", id="wf-after", args=[4])
    assert worker.expect("result", id="wf-after")["value"] == expected_three(4)
    assert worker.alive()
    assert workflow_row(db, "wf-doomed")["status"] == "DEAD_LETTER"
