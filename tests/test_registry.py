"""Who runs what: work no live worker serves is said out loud, and an executor ID is one
process's at a time.

Each executor's heartbeat row records the workflow names and queues it serves and which
process holds it (a token per engine). A Client that enqueues a name nobody serves is
warned once; listings say whether each workflow is served; a worker that sees waiting
work under a name it does not register says so once; a second live process under an
executor ID already in use is refused at launch, and a running one whose ID was taken
stops.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest

import durably
from durably.runtime import census, served
from procs.harness import Workers
from procs.workflows import expected_three
from support import wait_until

pytestmark = pytest.mark.timeout(60)

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def fresh_process_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warnings are once per name per process: each test starts with none given yet."""
    monkeypatch.setattr(served, "_checked", {})
    monkeypatch.setattr(served, "_warned", set())
    monkeypatch.setattr(served, "_strangers", set())


def messages(
    caplog: pytest.LogCaptureFixture, text: str, level: int = logging.WARNING
) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "durably" and r.levelno == level and text in r.getMessage()
    ]


def heartbeat_at(db: psycopg.Connection[Any], executor_id: str) -> datetime:
    row = db.execute("SELECT heartbeat_at FROM executors WHERE id = %s", (executor_id,)).fetchone()
    assert row is not None, f"no executor row {executor_id}"
    return row[0]  # type: ignore[no-any-return]


def beats(db: psycopg.Connection[Any], executor_id: str, count: int) -> None:
    """Wait until the executor's heartbeat has been renewed ``count`` more times."""
    for _ in range(count):
        before = heartbeat_at(db, executor_id)
        wait_until(lambda b=before: heartbeat_at(db, executor_id) > b, what="a heartbeat")


# ------------------------------------------------------------ work nobody serves


def test_enqueue_of_a_name_no_worker_serves_warns_once_and_runs_when_one_starts(
    make_app: Callable[..., durably.App],
    pg_url: str,
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="durably")
    worker = make_app(poll_interval=0.2)
    worker.queue("jobs")
    worker.engine  # noqa: B018 - the schema and the queue exist; no executor runs yet
    with durably.Client(pg_url, schema=schema) as client:
        first = client.enqueue("jobs", "billing.send_invoice", 1)
        second = client.enqueue("jobs", "billing.send_invoice", 2)
        (warning,) = messages(caplog, "no live worker serves")
        assert "'billing.send_invoice' on queue 'jobs'" in warning
        assert "name= given to @app.workflow" in warning  # how names are made
        assert first.status() == second.status() == durably.Status.ENQUEUED

        runs: list[int] = []

        @worker.workflow(name="billing.send_invoice")
        def send_invoice(n: int) -> int:
            runs.append(n)
            return n * 10

        worker.launch()
        assert first.result(timeout=DEADLINE) == 10
        assert second.result(timeout=DEADLINE) == 20
        # once served, enqueueing again says nothing more
        assert client.enqueue("jobs", "billing.send_invoice", 3).result(timeout=DEADLINE) == 30
    assert sorted(runs) == [1, 2, 3]
    assert len(messages(caplog, "no live worker serves")) == 1


def test_listing_says_whether_a_live_worker_serves_each_workflow(
    make_app: Callable[..., durably.App], pg_url: str, schema: str
) -> None:
    worker = make_app(poll_interval=0.2)
    worker.queue("jobs")
    worker.engine  # noqa: B018 - the schema and the queue exist; no executor runs yet
    with durably.Client(pg_url, schema=schema) as client:
        handle = client.enqueue("jobs", "reports.build", 1)
        (info,) = client.list_workflows(ids=[handle.id])
        assert (info.status, info.served) == (durably.Status.ENQUEUED, False)

        @worker.workflow(name="reports.build")
        def build(x: int) -> int:
            return x + 1

        worker.launch()
        # The launch's own heartbeat recorded the names and queues it serves.
        (info,) = client.list_workflows(ids=[handle.id])
        assert info.served is True
        assert handle.result(timeout=DEADLINE) == 2
        # A worker that stops no longer serves anything.
        worker.shutdown(grace=5)
        (info,) = client.list_workflows(ids=[handle.id])
        assert (info.status, info.served) == (durably.Status.SUCCESS, False)


def test_worker_warns_once_about_waiting_work_under_a_name_it_does_not_register(
    monkeypatch: pytest.MonkeyPatch,
    make_app: Callable[..., durably.App],
    pg_url: str,
    schema: str,
    db: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="durably")
    monkeypatch.setattr(census, "CENSUS_EVERY", 0.2)  # ten minutes by default
    worker = make_app(poll_interval=0.2)
    worker.queue("jobs")

    @worker.workflow(name="mail.send")
    def send(to: str) -> str:
        return f"sent to {to}"

    worker.engine  # noqa: B018 - the schema and the queue exist; no executor runs yet
    with durably.Client(pg_url, schema=schema) as client:
        # Work enqueued under a name the worker's code no longer declares (renamed).
        stale = client.enqueue("jobs", "mail.send_v1", "a@b.c")
        worker.launch()
        # Seen by the census at the launch's first round.
        wait_until(
            lambda: messages(caplog, "named 'mail.send_v1'"), what="the warning for mail.send_v1"
        )
        (warning,) = messages(caplog, "named 'mail.send_v1'")
        assert "does not register" in warning and worker.executor_id in warning
        # And by the censuses after it: a name that turns up later is told once too.
        client.enqueue("jobs", "mail.sned", "typo@b.c")
        wait_until(lambda: messages(caplog, "named 'mail.sned'"), what="the warning for mail.sned")
        beats(db, worker.executor_id, 3)
        # Work it does serve runs as ever; the strangers wait.
        assert client.enqueue("jobs", "mail.send", "x@y.z").result(timeout=DEADLINE) == (
            "sent to x@y.z"
        )
        assert stale.status() == durably.Status.ENQUEUED
    assert len(messages(caplog, "named 'mail.send_v1'")) == 1
    assert len(messages(caplog, "named 'mail.sned'")) == 1
    assert not messages(caplog, "named 'mail.send'")


# ------------------------------------------------------------ one process per executor ID


def test_second_process_with_the_same_executor_id_is_refused_and_steps_run_once(
    workers: Workers, db: psycopg.Connection[Any]
) -> None:
    # Two deployments configured with one fixed executor_id. Before, the second launch
    # "recovered" the first's running workflow, and its in-flight step ran twice.
    first = workers.spawn("fixed-id", lease=30.0, hold={"s2"})
    first.send(op="start", wf="three", id="wf-once", args=[3])
    wait_until(lambda: ("s2", first.pid) in workers.lines(), what="step 2 running in the first")

    second = workers.spawn("fixed-id", lease=30.0, ready=False)
    assert not second.ready_or_exit(), "the second process launched under a taken ID"
    assert second.wait_exit() != 0
    log = second.stderr()
    assert "durably.errors.ExecutorIdInUse" in log
    assert (
        f"executor ID 'fixed-id' is held by another live process "
        f"(host {socket.gethostname()!r}, pid {first.pid}, last heartbeat "
    ) in log
    assert "Give each process its own executor_id" in log

    workers.open_gate("s2")
    first.send(op="wait", id="wf-once", timeout=DEADLINE)
    assert first.expect("result", id="wf-once")["value"] == expected_three(3)
    assert workers.counts() == {"s1": 1, "s2": 1, "s3": 1}
    assert {pid for _, pid in workers.lines()} == {first.pid}
    row = db.execute(
        "SELECT status, epoch, recovery_attempts FROM workflows WHERE id = 'wf-once'"
    ).fetchone()
    assert row == ("SUCCESS", 1, 0)  # never recovered by anyone


def test_executor_whose_id_was_taken_stops_and_says_so(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="durably")
    app = make_app(poll_interval=0.2)

    @app.workflow(name="ledger.post")
    def post() -> str:
        return "posted"

    assert post() == "posted"
    executor_id = app.executor_id
    # Another process under the same ID took the row, as after this one's lease lapsed.
    db.execute(
        "UPDATE executors SET incarnation = 'another', hostname = 'elsewhere', pid = 4242, "
        "heartbeat_at = now(), lease_seconds = 3600 WHERE id = %s",
        (executor_id,),
    )
    wait_until(
        lambda: messages(caplog, "was taken by another process", logging.ERROR),
        what="the error of the evicted executor",
    )
    (error,) = messages(caplog, "was taken by another process", logging.ERROR)
    assert "'elsewhere', pid 4242" in error and "own executor_id" in error
    with pytest.raises(durably.ExecutorIdInUse, match="host 'elsewhere', pid 4242"):
        post()
    assert db.execute("SELECT count(*) FROM workflows").fetchone() == (1,)  # nothing new
    app.shutdown(grace=5)
    # Its shutdown leaves the new holder's row alone.
    row = db.execute(
        "SELECT incarnation, hostname FROM executors WHERE id = %s", (executor_id,)
    ).fetchone()
    assert row == ("another", "elsewhere")
