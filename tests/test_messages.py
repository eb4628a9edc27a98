"""Messages: app.send and durably.recv — FIFO per topic, durable timeouts, None values,
idempotency keys, exactly-once sends from workflows, wake-ups by notification."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import durably
from durably.execution import waits
from support import wait_until
from waitprocs.util import (
    Crash,
    Procs,
    background,
    crash_then_recover,
    one,
    ops,
    parking_in_progress,
    slow_down_parking,
    snapshot,
    workflow_row,
)

pytestmark = pytest.mark.timeout(60)


def messages(db: psycopg.Connection[Any], workflow_id: str) -> list[tuple[Any, ...]]:
    """(topic, value, consumed_step) of a workflow's messages, oldest first."""
    return db.execute(
        "SELECT topic, value, consumed_step FROM messages WHERE workflow_id = %s ORDER BY id",
        (workflow_id,),
    ).fetchall()


def parked_on_recv(db: psycopg.Connection[Any], workflow_id: str) -> bool:
    row = workflow_row(db, workflow_id)
    return row["status"] == "PENDING" and row["executor_id"] is None and row["wait_kind"] == "recv"


# ------------------------------------------------------------------------ order and topics


def test_recv_takes_the_oldest_message_of_its_topic(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def inbox() -> list[Any]:
        durably.recv("gate", timeout=10)  # everything below is queued before this returns
        return [
            durably.recv("b", timeout=5),
            durably.recv("a", timeout=5),
            durably.recv(None, timeout=5),  # None is a topic of its own ...
            durably.recv("a", timeout=5),
            durably.recv("", timeout=5),  # ... and so is the empty string
            durably.recv("a", timeout=5),
            durably.recv("a", timeout=0),  # nothing left
            durably.recv(None, timeout=0),
        ]

    handle = inbox.options(id="ib").start()
    for message, topic in [
        ("a1", "a"),
        ("n1", None),
        ("b1", "b"),
        ("a2", "a"),
        ("e1", ""),
        ("a3", "a"),
    ]:
        app.send("ib", message, topic)
    app.send("ib", "open", topic="gate")
    assert handle.result(timeout=10) == ["b1", "a1", "n1", "a2", "e1", "a3", None, None]
    # Each message consumed by the recv at the step that returned it.
    assert messages(db, "ib") == [
        ("a", "a1", 3),
        (None, "n1", 4),
        ("b", "b1", 2),
        ("a", "a2", 5),
        ("", "e1", 6),
        ("a", "a3", 7),
        ("gate", "open", 1),
    ]
    kinds = [(s.step, s.kind, s.name) for s in app.list_steps("ib")]
    assert kinds[:3] == [(1, "recv", "recv:gate"), (2, "recv", "recv:b"), (3, "recv", "recv:a")]
    assert kinds[3] == (4, "recv", "recv")


def test_async_recv_and_send(app: durably.App) -> None:
    @app.workflow
    async def ainbox() -> list[Any]:
        first = await durably.recv_async("x", timeout=10)
        second = await durably.recv_async("x", timeout=10)
        return [first, second]

    async def main() -> Any:
        handle = await ainbox.options(id="aib").start_async()
        await app.send_async("aib", {"n": 1}, topic="x")
        await app.send_async("aib", [2, "two"], topic="x")
        return await handle.result_async(timeout=10)

    assert asyncio.run(main()) == [{"n": 1}, [2, "two"]]


def test_a_message_whose_value_is_none_is_not_a_timeout(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def wf() -> list[Any]:
        got = durably.recv("t", timeout=30)  # a timeout would take 30 s
        return ["received", got]

    handle = wf.options(id="none").start()
    app.send("none", None, topic="t")
    assert handle.result(timeout=10) == ["received", None]
    ((_step, _name, kind, output),) = ops(db, "none")
    assert (kind, output) == ("recv", {"message": None})
    assert messages(db, "none") == [("t", None, 1)]


# ------------------------------------------------------------------------ timeouts


def test_recv_timeout_returns_none_and_its_replay_returns_none_at_once(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    # The recovered code waits an hour at the timed-out position: its replay must return
    # the recorded None at once, and leave the message that came later for the next recv.
    state = {"crash": True, "timeout": 0.05}

    def build(app: durably.App) -> Any:
        @app.step(name="send_late_then_crash")
        def send_late_then_crash() -> None:
            if state["crash"]:
                state["crash"], state["timeout"] = False, 3600
                app.send("rt", "late", topic="x")  # from a step: a plain send
                raise Crash()

        @app.workflow(name="timer")
        def timer() -> list[Any]:
            first = durably.recv("x", timeout=state["timeout"])
            send_late_then_crash()
            return [first, durably.recv("x", timeout=5)]

        return timer

    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="rt")())
    assert app2.handle("rt").result(timeout=10) == [None, "late"]
    recorded = ops(db, "rt")
    assert [(op[0], op[2], op[3]) for op in recorded] == [
        (1, "recv", {"timeout": True}),
        (2, "step", None),
        (3, "recv", {"message": "late"}),
    ]
    assert messages(db, "rt") == [("x", "late", 3)]


def test_recv_timeout_is_durable_across_a_restart(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    first = make_app(park_after=0.1, poll_interval=30)

    def build(app: durably.App) -> Any:
        @app.workflow(name="patient")
        def patient() -> Any:
            return durably.recv("x", timeout=1.5)

        return patient

    build(first).options(id="dur").start()
    row = wait_until(
        lambda: parked_on_recv(db, "dur") and workflow_row(db, "dur"), what="parked on recv"
    )
    deadline = row["wait_deadline"]
    assert row["wake_at"] == deadline
    first.shutdown(grace=0)
    # Another process, which never saw the recv start, wakes it at the stored deadline.
    second = make_app(poll_interval=0.1)
    build(second)
    second.launch()
    assert second.handle("dur").result(timeout=10) is None
    row = workflow_row(db, "dur")
    assert row["wait_deadline"] == deadline  # kept, not restarted by the replay
    assert row["completed_at"] >= deadline
    assert [(op[2], op[3]) for op in ops(db, "dur")] == [("recv", {"timeout": True})]


# ------------------------------------------------------------------------ idempotency


def test_the_same_idempotency_key_delivers_once(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def wf() -> list[Any]:
        first, second = durably.recv("t", timeout=10), durably.recv("t", timeout=10)
        return [first, second, durably.recv("t", timeout=0.05)]

    handle = wf.options(id="idem").start()
    app.send("idem", "one", topic="t", idempotency_key="k1")
    app.send("idem", "one again", topic="t", idempotency_key="k1")
    asyncio.run(app.send_async("idem", "one more", topic="t", idempotency_key="k1"))
    app.send("idem", "two", topic="t", idempotency_key="k2")
    assert handle.result(timeout=10) == ["one", "two", None]
    assert [m[1] for m in messages(db, "idem")] == ["one", "two"]


def test_a_send_from_a_rerun_workflow_is_delivered_exactly_once(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    receiver_app = make_app()

    @receiver_app.workflow(name="receiver")
    def receiver() -> list[Any]:
        return [durably.recv("hi", timeout=10), durably.recv("hi", timeout=0.2)]

    receiver_app.launch()
    rx = receiver.options(id="rx").start()
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        @app.step(name="maybe_crash")
        def maybe_crash() -> None:
            if state["crash"]:
                state["crash"] = False
                raise Crash()

        @app.workflow(name="sender")
        def sender() -> str:
            app.send("rx", "hello", topic="hi")
            maybe_crash()  # dies after the send, before finishing
            return "sent"

        return sender

    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="tx")())
    assert app2.handle("tx").result(timeout=10) == "sent"
    assert rx.result(timeout=10) == ["hello", None]
    assert messages(db, "rx") == [("hi", "hello", 1)]
    assert [(op[0], op[1], op[2]) for op in ops(db, "tx")] == [
        (1, "send:rx", "send"),
        (2, "maybe_crash", "step"),
    ]


# ------------------------------------------------------------------------ wake-ups


def test_a_parked_workflow_is_woken_by_a_message_from_another_process(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], procs: Procs
) -> None:
    # The fallback scan runs every 30 s: a wake-up within the 10 s deadline comes from
    # the notification of the send.
    app = make_app(park_after=0.1, poll_interval=30)

    @app.workflow(name="parked")
    def parked() -> Any:
        return durably.recv("go", timeout=60)

    app.launch()
    handle = parked.options(id="pk").start()
    wait_until(lambda: parked_on_recv(db, "pk"), what="parked on recv")
    sender = procs.python(
        "import durably, sys; "
        f"app = durably.App({app.engine.db.url!r}, schema={app.schema!r}); "
        "app.send('pk', {'from': 'afar'}, topic='go'); "
        'print(\'{"event": "sent"}\', flush=True)'
    )
    sender.expect("sent")
    assert sender.wait() == 0
    assert handle.result(timeout=10) == {"from": "afar"}


def test_a_waiting_recv_is_woken_by_a_notification_not_by_polling(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In-place waits fall back to a database check every POLL_INTERVAL; at 30 s, each of
    # these receives (10 s timeout each) can only end with its message by a notification.
    monkeypatch.setattr(waits, "POLL_INTERVAL", 30.0)
    app = make_app(park_after=60)

    @app.workflow(name="pinger")
    def pinger() -> list[Any]:
        return [durably.recv("ping", timeout=10) for _ in range(5)]

    app.launch()
    handle = pinger.options(id="ping").start()
    for i in range(5):
        # The i-th recv found nothing and stored its deadline: it is about to wait.
        wait_until(
            lambda i=i: workflow_row(db, "ping")["wait_step"] == i + 1, what=f"recv #{i + 1}"
        )
        app.send("ping", i, topic="ping")
    assert handle.result(timeout=10) == [0, 1, 2, 3, 4]


def test_messages_sent_while_workflows_park_are_never_missed(
    make_app: Callable[..., durably.App],
) -> None:
    # park_after=0: every recv parks, racing with sends from another thread. A message
    # that lands between the park's check and its commit must still wake the workflow
    # (the recv timeout is 20 s, the test waits 15 s in all).
    app = make_app(park_after=0, poll_interval=30)

    @app.workflow(name="racer")
    def racer(i: int) -> Any:
        return durably.recv("r", timeout=20)

    app.launch()
    sender = make_app()  # another client, as a real sender would be
    count = 60
    started: queue.Queue[str | None] = queue.Queue()

    def send_as_soon_as_started() -> None:
        while (workflow_id := started.get()) is not None:
            sender.send(workflow_id, workflow_id, topic="r")

    with background(send_as_soon_as_started) as (thread, box):
        handles = []
        for i in range(count):
            handles.append(racer.options(id=f"race-{i}").start(i))
            started.put(handles[-1].id)
        started.put(None)
        thread.join(timeout=10)
    assert "error" not in box
    assert [h.result(timeout=15) for h in handles] == [h.id for h in handles]


def test_a_message_sent_while_the_workflow_parks_still_wakes_it(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], schema: str
) -> None:
    """The park checks "is a message already here?" and then commits; a message sent in
    between must not be left until the recv's timeout (no lost wake-up)."""
    app = make_app(park_after=0.1, poll_interval=30)

    @app.workflow(name="late")
    def late() -> Any:
        return durably.recv("go", timeout=20)

    app.launch()
    sender = make_app()  # another client: its own connections, not this app's queue
    slow_down_parking(db, "recv", 1.0)
    handle = late.options(id="late").start()
    wait_until(lambda: parking_in_progress(db, schema), what="the park in progress")
    # Sent while the park is in progress (the send may wait for it, or not: either way
    # one of the two must see the other).
    sender.send("late", "in between", topic="go")
    # The recv's timeout is 20 s and the fallback scan 30 s: within 8 s only a wake-up
    # caused by the message itself can end it.
    try:
        result = handle.result(timeout=8)
    except durably.ResultTimeout:
        row = workflow_row(db, "late")
        pytest.fail(
            f"lost wake-up: parked until {row['wake_at']} with an unconsumed message "
            f"{messages(db, 'late')}"
        )
    assert result == "in between"


# ------------------------------------------------------------------------ errors


def test_send_to_an_unknown_workflow_is_an_error_and_changes_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    before = snapshot(db)
    with pytest.raises(durably.WorkflowNotFound, match="ghost"):
        app.send("ghost", "boo")
    with pytest.raises(durably.WorkflowNotFound):
        asyncio.run(app.send_async("ghost", "boo", topic="t", idempotency_key="k"))
    assert snapshot(db) == before

    @app.workflow
    def wf() -> str:
        try:
            app.send("ghost", "boo")
        except durably.WorkflowNotFound:
            return "not found"
        return "sent?"

    assert wf.options(id="sender")() == "not found"
    assert ops(db, "sender") == []  # the failed send recorded nothing
    assert one(db, "SELECT count(*) FROM messages") == 0


def test_recv_outside_a_workflow_is_an_error(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.step
    def in_step() -> Any:
        return durably.recv("t", timeout=1)

    @app.workflow
    def wf() -> str:
        try:
            in_step()
        except durably.NotInWorkflow:
            return "refused in a step"
        return "received?"

    before = snapshot(db)
    with pytest.raises(durably.NotInWorkflow, match="recv"):
        durably.recv("t", timeout=1)
    with pytest.raises(durably.NotInWorkflow):
        asyncio.run(durably.recv_async())
    with pytest.raises(durably.NotInWorkflow):
        in_step()  # a step outside a workflow is a plain call
    assert snapshot(db) == before
    assert wf.options(id="w")() == "refused in a step"


def test_bad_message_arguments_are_refused_and_change_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def target() -> Any:
        return durably.recv("t", timeout=10)

    handle = target.options(id="target").start()
    wait_until(lambda: workflow_row(db, "target")["wait_step"] == 1, what="target waiting")
    before = snapshot(db)
    for call in (
        lambda: app.send("target", "x", topic=5),  # type: ignore[arg-type]
        lambda: app.send("target", "x", topic=b"t"),  # type: ignore[arg-type]
        lambda: app.send("target", "x", topic="a\x00b"),
        lambda: app.send("target", "x", idempotency_key=""),
        lambda: app.send("target", "x", idempotency_key=7),  # type: ignore[arg-type]
        lambda: app.send(7, "x"),  # type: ignore[arg-type]
        lambda: app.send("", "x"),
        lambda: durably.recv(5),  # type: ignore[arg-type]
        lambda: durably.recv("t", timeout=-1),
        lambda: durably.recv("t", timeout="1"),  # type: ignore[arg-type]
    ):
        with pytest.raises(durably.InvalidArgument):
            call()
    with pytest.raises(durably.ValueEncodingError, match="object"):
        app.send("target", object())
    with pytest.raises(durably.ValueEncodingError):
        app.send("target", {"n": float("nan")})
    assert snapshot(db) == before
    app.send("target", "fine", topic="t")
    assert handle.result(timeout=10) == "fine"

    @app.workflow
    def inside() -> list[str]:
        refused = []
        for kwargs in ({"topic": 5}, {"timeout": -1}, {"timeout": True}):
            try:
                durably.recv(**kwargs)  # type: ignore[arg-type]
            except durably.InvalidArgument:
                refused.append("refused")
        durably.recv("t", timeout=0)  # the refused calls took no step number
        return refused

    assert inside.options(id="inside")() == ["refused"] * 3
    assert [(op[0], op[2]) for op in ops(db, "inside")] == [(1, "recv")]
