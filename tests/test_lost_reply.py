"""A lost reply after each write statement: the statement committed, the connection broke
before its answer arrived, and the caller cannot tell. Each test drops the reply of one
statement kind (``durably.store.faults``) and checks the outcome is as if nothing had
happened: nothing run twice, nothing consumed twice, nothing stranded."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest

import durably
from durably.codec import dumps_args
from durably.store import faults
from support import wait_until

pytestmark = pytest.mark.timeout(60)


class Dropper:
    """The fault hook: drops the replies of statements named ``target`` while armed."""

    def __init__(self) -> None:
        self.target = ""
        self.left = 0
        self.dropped: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def arm(self, target: str, times: int = 1) -> None:
        with self._lock:
            self.target, self.left = target, times

    def __call__(self, names: Sequence[str]) -> bool:
        with self._lock:
            if self.left > 0 and self.target in names:
                self.left -= 1
                self.dropped.append(tuple(names))
                return True
        return False


@pytest.fixture
def lose() -> Iterator[Dropper]:
    dropper = Dropper()
    faults.install(dropper)
    try:
        yield dropper
    finally:
        faults.install(None)


def dropped(lose: Dropper, target: str, times: int = 1) -> None:
    """The test really exercised the lost reply it is about."""
    assert sum(target in names for names in lose.dropped) == times, lose.dropped


def final(db: psycopg.Connection[Any]) -> bool:
    """No workflow of the test's schema is left unfinished."""
    row = db.execute(
        "SELECT count(*) FROM workflows WHERE status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED')"
    ).fetchone()
    return row is not None and row[0] == 0


@pytest.fixture
def bodies() -> list[str]:
    return []


# ------------------------------------------------------------------ starts and steps


@pytest.mark.parametrize("how", ["call", "start"])
def test_insert_workflow(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper, bodies: list[str], how: str
) -> None:
    @app.step
    def work(x: int) -> int:
        bodies.append("work")
        return x * 2

    @app.workflow
    def wf(x: int) -> int:
        return work(x) + 1

    lose.arm("insert_workflow")
    result = wf(20) if how == "call" else wf.start(20).result(timeout=30)
    assert result == 41
    dropped(lose, "insert_workflow")
    assert bodies == ["work"]
    wait_until(lambda: final(db), what="every workflow finished")


def test_insert_workflow_async(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper, bodies: list[str]
) -> None:
    import asyncio

    @app.step
    async def work(x: int) -> int:
        bodies.append("work")
        return x * 2

    @app.workflow
    async def wf(x: int) -> int:
        return await work(x) + 1

    lose.arm("insert_workflow")
    assert asyncio.run(wf(4)) == 9
    dropped(lose, "insert_workflow")
    assert bodies == ["work"]
    wait_until(lambda: final(db), what="every workflow finished")


def test_record_operation_does_not_run_the_step_again(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper, bodies: list[str]
) -> None:
    @app.step
    def work(x: int) -> int:
        bodies.append(f"work{x}")
        return x

    @app.workflow
    def wf() -> int:
        return work(1) + work(2)

    lose.arm("record_operation")
    assert wf() == 3
    dropped(lose, "record_operation")
    assert bodies == ["work1", "work2"]


def test_finish_workflow_keeps_its_own_outcome(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    @app.workflow
    def wf() -> str:
        return "done"

    lose.arm("finish_workflow_notify")
    handle = wf.start()
    assert handle.result(timeout=30) == "done"
    dropped(lose, "finish_workflow_notify")
    assert handle.status() == durably.Status.SUCCESS


def test_start_child_runs_the_child_once(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper, bodies: list[str]
) -> None:
    @app.step
    def work(x: int) -> int:
        bodies.append(f"child{x}")
        return x

    @app.workflow
    def child(x: int) -> int:
        return work(x) * 10

    @app.workflow
    def parent() -> int:
        return child(1) + child(2)

    lose.arm("start_child")
    assert parent() == 30
    dropped(lose, "start_child")
    assert sorted(bodies) == ["child1", "child2"]
    wait_until(lambda: final(db), what="every workflow finished")


# ------------------------------------------------------------------ messages, events, streams


def test_consume_message_returns_the_same_message_again(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    @app.workflow
    def inbox() -> list[Any]:
        return [durably.recv("t", timeout=20), durably.recv("t", timeout=20)]

    workflow_id = f"inbox-{uuid.uuid4().hex[:6]}"
    handle = inbox.options(id=workflow_id).start()
    app.send(workflow_id, "first", topic="t")
    app.send(workflow_id, "second", topic="t")
    lose.arm("consume_message")
    assert handle.result(timeout=30) == ["first", "second"]
    dropped(lose, "consume_message")
    rows = db.execute(
        "SELECT value, consumed_step FROM messages WHERE workflow_id = %s ORDER BY id",
        (workflow_id,),
    ).fetchall()
    assert rows == [("first", 1), ("second", 2)]


def test_send_message_delivers_once(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    @app.workflow
    def inbox() -> list[Any]:
        return [durably.recv(timeout=20), durably.recv(timeout=1)]

    workflow_id = f"inbox-{uuid.uuid4().hex[:6]}"
    handle = inbox.options(id=workflow_id).start()
    lose.arm("send_message")
    app.send(workflow_id, "only")
    dropped(lose, "send_message")
    assert handle.result(timeout=30) == ["only", None]
    count = db.execute("SELECT count(*) FROM messages WHERE workflow_id = %s", (workflow_id,))
    assert count.fetchone() == (1,)


def test_send_from_workflow_delivers_once(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    @app.workflow
    def inbox() -> list[Any]:
        return [durably.recv(timeout=20), durably.recv(timeout=1)]

    @app.workflow
    def sender(to: str) -> None:
        app.send(to, "hello")

    workflow_id = f"inbox-{uuid.uuid4().hex[:6]}"
    handle = inbox.options(id=workflow_id).start()
    lose.arm("send_from_workflow")
    sender(workflow_id)
    dropped(lose, "send_from_workflow")
    assert handle.result(timeout=30) == ["hello", None]


def test_set_event(app: durably.App, db: psycopg.Connection[Any], lose: Dropper) -> None:
    @app.workflow
    def publisher() -> str:
        durably.set_event("stage", "ready")
        return "ok"

    workflow_id = f"pub-{uuid.uuid4().hex[:6]}"
    lose.arm("set_event")
    assert publisher.options(id=workflow_id)() == "ok"
    dropped(lose, "set_event")
    assert app.get_event(workflow_id, "stage", timeout=5) == "ready"
    kinds = db.execute(
        "SELECT kind FROM operations WHERE workflow_id = %s ORDER BY step", (workflow_id,)
    ).fetchall()
    assert kinds == [("set_event",)]


def test_write_stream_writes_each_entry_once(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    @app.workflow
    def writer() -> None:
        for i in range(3):
            durably.write_stream("out", i)
        durably.close_stream("out")

    workflow_id = f"writer-{uuid.uuid4().hex[:6]}"
    lose.arm("write_stream", times=2)
    writer.options(id=workflow_id)()
    dropped(lose, "write_stream", times=2)
    assert list(app.read_stream(workflow_id, "out", timeout=5)) == [0, 1, 2]


def test_wait_deadline(app: durably.App, db: psycopg.Connection[Any], lose: Dropper) -> None:
    @app.workflow
    def waiter() -> Any:
        return durably.recv("never", timeout=0.3)

    lose.arm("wait_deadline")
    assert waiter() is None
    dropped(lose, "wait_deadline")


# ------------------------------------------------------------------ parking and waking


@pytest.fixture
def parking_app(make_app: Callable[..., durably.App]) -> durably.App:
    made = make_app(park_after=0.05, poll_interval=0.5)
    made.launch()
    return made


def test_park(parking_app: durably.App, db: psycopg.Connection[Any], lose: Dropper) -> None:
    @parking_app.workflow
    def sleeper() -> str:
        durably.sleep(0.3)
        return "woke"

    lose.arm("park")
    assert sleeper.start().result(timeout=30) == "woke"
    dropped(lose, "park")


def test_park_settled_after_what_it_waits_for_arrived(
    parking_app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    """The park committed, its reply was lost, and the event arrived before the retry.
    The retry must report the park it made: the run unwinds and is claimed again. Were it
    to find the event and carry on, the workflow would run with no owner, free for any
    executor to claim on the next wake: two bodies of one step at once."""
    target = f"target-{uuid.uuid4().hex[:6]}"
    owners: list[object] = []

    @parking_app.step
    def owner() -> object:
        row = db.execute(
            "SELECT executor_id FROM workflows WHERE id = %s", (durably.workflow_id(),)
        ).fetchone()
        owners.append(row and row[0])
        return "ran"

    @parking_app.workflow
    def waiter() -> object:
        value = parking_app.get_event(target, "stage", timeout=30)
        owner()
        return value

    def deliver(names: Sequence[str]) -> bool:
        # What a set_event of the target does, between the park's commit and its retry.
        if not lose(names):
            return False
        db.execute(
            "INSERT INTO events (workflow_id, key, step, value) VALUES (%s, 'stage', 0, '\"set\"')",
            (target,),
        )
        db.execute(
            "UPDATE workflows SET wake_at = clock_timestamp() WHERE wait_kind = 'event'"
            " AND executor_id IS NULL AND status = 'PENDING' AND wait_target = %s",
            (target,),
        )
        return True

    faults.install(deliver)
    lose.arm("park")
    assert waiter.start().result(timeout=30) == "set"
    dropped(lose, "park")
    assert owners and all(o is not None for o in owners), owners


def test_wake_due_runs_what_it_claimed(
    parking_app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    @parking_app.workflow
    def sleeper() -> str:
        durably.sleep(1.0)
        return "woke"

    handle = sleeper.start()
    wait_until(
        lambda: (
            db.execute(
                "SELECT executor_id IS NULL AND wait_kind = 'sleep' FROM workflows WHERE id = %s",
                (handle.id,),
            ).fetchone()
            == (True,)
        ),
        what="parked",
    )
    lose.arm("wake_due", times=3)  # the claim that takes it, and scans around it
    assert handle.result(timeout=30) == "woke"
    assert lose.dropped


# ------------------------------------------------------------------ queues


def test_enqueue_and_claim_queued(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper, bodies: list[str]
) -> None:
    jobs = app.queue("jobs")

    @app.step
    def work() -> str:
        bodies.append("work")
        return "ran"

    @app.workflow
    def job() -> str:
        return work()

    lose.arm("enqueue")
    handle = jobs.enqueue(job)
    dropped(lose, "enqueue")
    lose.arm("claim_queued", times=2)
    assert handle.result(timeout=30) == "ran"
    assert bodies == ["work"]
    count = db.execute("SELECT count(*) FROM workflows WHERE name = %s", (job.name,))
    assert count.fetchone() == (1,)


def test_claim_queued_for_many(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper, bodies: list[str]
) -> None:
    jobs = app.queue("many", concurrency=3)

    @app.workflow
    def job(i: int) -> int:
        bodies.append(f"job{i}")
        return i

    lose.arm("claim_queued", times=3)
    handles = [jobs.enqueue(job, i) for i in range(10)]
    assert [h.result(timeout=30) for h in handles] == list(range(10))
    assert sorted(bodies) == sorted(f"job{i}" for i in range(10))
    wait_until(lambda: final(db), what="every workflow finished")


# ------------------------------------------------------------------ control


def test_resume_retried_does_not_fence_out_the_run_it_started(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    """The resume committed, its reply was lost, and an executor claimed the workflow
    before the retry. The retry must not resume it again: that would fence out the run
    the first attempt started while its step may be running, and start another."""

    @app.workflow
    def paused() -> str:
        return "done"

    handle = paused.options(id=f"res-{uuid.uuid4().hex[:6]}").start()
    assert handle.result(timeout=30) == "done"
    db.execute("UPDATE workflows SET status = 'CANCELLED' WHERE id = %s", (handle.id,))
    # The other executor is live (fresh heartbeat, long lease): no heartbeat of this app
    # may take the workflow over from it while the retry waits.
    db.execute(
        "INSERT INTO executors (id, hostname, pid, lease_seconds) "
        "VALUES ('elsewhere', 'elsewhere', 1, 3600) ON CONFLICT (id) DO NOTHING"
    )
    claimed: list[int] = []

    def claim_between(names: Sequence[str]) -> bool:
        # What a wake_due of another executor does, between the commit and the retry.
        if not lose(names):
            return False
        row = db.execute(
            "UPDATE workflows SET executor_id = 'elsewhere', epoch = epoch + 1, wake_at = NULL"
            " WHERE id = %s RETURNING epoch",
            (handle.id,),
        ).fetchone()
        assert row is not None
        claimed.append(row[0])
        return True

    faults.install(claim_between)
    lose.arm("resume")
    app.resume(handle.id)
    dropped(lose, "resume")
    row = db.execute(
        "SELECT executor_id, epoch FROM workflows WHERE id = %s", (handle.id,)
    ).fetchone()
    assert row == ("elsewhere", claimed[0])


def test_fork_returns_its_copy(
    app: durably.App, db: psycopg.Connection[Any], lose: Dropper
) -> None:
    @app.step
    def work(x: int) -> int:
        return x

    @app.workflow
    def wf() -> int:
        return work(1) + work(2)

    source = wf.start()
    assert source.result(timeout=30) == 3
    lose.arm("fork")
    copy = app.fork(source.id, from_step=2)
    dropped(lose, "fork")
    assert copy.result(timeout=30) == 3


def test_cancel(app: durably.App, db: psycopg.Connection[Any], lose: Dropper) -> None:
    @app.workflow
    def waiter() -> Any:
        return durably.recv(timeout=30)

    handle = waiter.start()
    lose.arm("cancel")
    app.cancel(handle.id)
    dropped(lose, "cancel")
    with pytest.raises(durably.WorkflowCancelled):
        handle.result(timeout=30)


# ------------------------------------------------------------------ recovery claims


def orphan(
    app: durably.App, db: psycopg.Connection[Any], wf: Any, executor_id: str, *args: Any
) -> str:
    """A workflow row left PENDING by a dead executor (as a SIGKILL would leave it)."""
    workflow_id = f"orphan-{uuid.uuid4().hex[:6]}"
    inputs = dumps_args(app.engine.codec, args, {})
    db.execute(
        "INSERT INTO workflows (id, name, status, inputs, executor_id, max_recovery_attempts)"
        " VALUES (%s, %s, 'PENDING', %s::jsonb, %s, 5)",
        (workflow_id, wf.name, inputs, executor_id),
    )
    return workflow_id


def test_claim_own_at_launch(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    lose: Dropper,
    bodies: list[str],
) -> None:
    executor_id = f"exec-{uuid.uuid4().hex[:6]}"
    app = make_app(executor_id=executor_id)

    @app.workflow
    def wf(x: int) -> int:
        bodies.append("wf")
        return x

    db.execute("SELECT 1")  # the schema exists once the app made its database
    workflow_id = orphan(app, db, wf, executor_id, 5)
    lose.arm("claim_own")
    app.launch()
    dropped(lose, "claim_own")
    assert app.handle(workflow_id).result(timeout=30) == 5
    assert bodies == ["wf"]


def test_take_over_from_an_expired_executor(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    lose: Dropper,
    bodies: list[str],
) -> None:
    app = make_app(lease=1.0, poll_interval=0.5)

    @app.workflow
    def wf(x: int) -> int:
        bodies.append("wf")
        return x

    app.launch()
    db.execute(
        "INSERT INTO executors (id, hostname, pid, lease_seconds, heartbeat_at)"
        " VALUES ('dead', 'nowhere', 1, 1, now() - interval '1 minute')"
    )
    lose.arm("take_over", times=2)
    workflow_id = orphan(app, db, wf, "dead", 7)
    assert app.handle(workflow_id).result(timeout=30) == 7
    assert bodies == ["wf"]
    assert lose.dropped
