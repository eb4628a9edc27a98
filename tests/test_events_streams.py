"""Events (set_event, get_event, get_all_events) and streams (write_stream, close_stream,
read_stream): latest values, waiting, live reading, ends, offsets, crashes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import durably
from durably.execution import waits
from support import wait_until
from waitprocs.util import (
    Crash,
    background,
    blocked_in,
    crash_then_recover,
    ops,
    parking_in_progress,
    slow_down_parking,
    snapshot,
    workflow_row,
)

pytestmark = pytest.mark.timeout(60)

MIXED = [1, "two", {"three": 3, "nested": [None, True]}, [4, 4.5], None, 6.25, False, "", {}]


def waiting(db: psycopg.Connection[Any], workflow_id: str, step: int) -> bool:
    """Whether the workflow's wait at ``step`` started (it stored its deadline)."""
    row = db.execute("SELECT wait_step FROM workflows WHERE id = %s", (workflow_id,)).fetchone()
    return row is not None and row[0] == step


# ------------------------------------------------------------------------ events


def test_events_keep_their_latest_value(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.step
    def work() -> str:
        durably.set_event("from_step", {"inside": True})
        durably.set_event("stage", "in a step")
        durably.set_event("stage", "in a step, again")  # the same step: overwritten
        return "worked"

    @app.workflow
    def flow() -> str:
        durably.set_event("stage", "started")
        durably.set_event("count", 1)
        durably.recv("go", timeout=10)
        durably.set_event("count", 2)
        work()
        durably.set_event("cleared", None)
        durably.set_event("stage", "done")
        return "ok"

    handle = flow.options(id="ev").start()
    wait_until(lambda: waiting(db, "ev", 3), what="the workflow waiting")
    assert app.get_event("ev", "stage", timeout=0) == "started"
    assert app.get_all_events("ev") == {"stage": "started", "count": 1}
    app.send("ev", None, topic="go")
    assert handle.result(timeout=10) == "ok"
    assert app.get_event("ev", "stage", timeout=0) == "done"
    assert app.get_event("ev", "count") == 2
    assert asyncio.run(app.get_event_async("ev", "from_step", timeout=1)) == {"inside": True}
    everything = {
        "stage": "done",
        "count": 2,
        "from_step": {"inside": True},
        "cleared": None,
    }
    assert app.get_all_events("ev") == everything
    assert asyncio.run(app.get_all_events_async("ev")) == everything
    kinds = [(s.step, s.kind, s.name) for s in app.list_steps("ev")]
    assert kinds == [
        (1, "set_event", "stage"),
        (2, "set_event", "count"),
        (3, "recv", "recv:go"),
        (4, "set_event", "count"),
        (5, "step", work.spec.name),  # events set inside a step belong to the step
        (6, "set_event", "cleared"),
        (7, "set_event", "stage"),
    ]


def test_get_event_waits_until_the_event_is_set(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def flow() -> None:
        durably.recv("go", timeout=10)
        durably.set_event("late", ["finally"])

    flow.options(id="lt").start()
    with background(lambda: app.get_event("lt", "late", timeout=10)) as (thread, box):
        wait_until(lambda: waiting(db, "lt", 1), what="the workflow waiting")
        app.send("lt", "now", topic="go")
        thread.join(timeout=10)
    assert box == {"value": ["finally"]}


def test_get_event_times_out_with_none(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.workflow
    def quiet() -> str:
        durably.set_event("other", 1)
        return "ok"

    assert quiet.options(id="quiet")() == "ok"
    before = snapshot(db)
    assert app.get_event("quiet", "missing", timeout=0.1) is None
    assert asyncio.run(app.get_event_async("quiet", "missing", timeout=0)) is None
    assert app.get_all_events("no-such-workflow") == {}
    assert snapshot(db) == before


def test_get_event_of_a_workflow_that_never_existed_is_none_after_the_timeout(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """As DESIGN.md settles it: the getter may have started before the workflow it
    watches, so an unknown ID is not an error for it; ``send`` raises (its message would
    be lost). Nothing is stored either way."""
    before = snapshot(db)
    assert app.get_event("no-such-workflow", "k", timeout=0.1) is None
    assert asyncio.run(app.get_event_async("no-such-workflow", "k", timeout=0)) is None
    with pytest.raises(durably.WorkflowNotFound):
        app.send("no-such-workflow", "x")
    assert snapshot(db) == before


def test_get_event_waits_for_a_workflow_started_meanwhile(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app(park_after=0)

    @app.workflow(name="source")
    def source() -> None:
        durably.set_event("v", "set at last")

    @app.workflow(name="watcher")
    def watcher() -> Any:
        return app.get_event("src-late", "v", timeout=30)

    app.launch()
    handle = watcher.options(id="w").start()
    wait_until(lambda: waiting(db, "w", 1), what="the watcher waiting")
    assert app.list_workflows(ids=["src-late"]) == []
    with background(lambda: app.get_event("src-late", "v", timeout=30)) as (thread, box):
        source.options(id="src-late")()
        thread.join(timeout=10)
    assert box == {"value": "set at last"}
    assert handle.result(timeout=10) == "set at last"


def test_get_event_of_an_unknown_workflow_in_a_workflow_is_recorded(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Inside a workflow, the timeout on a workflow that did not exist yet is recorded: a
    replay returns None again, though a workflow of that ID exists by then."""
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        @app.workflow(name="late_source")
        def late_source() -> None:
            durably.set_event("v", "now I exist")

        @app.step(name="create_then_crash")
        def create_then_crash() -> None:
            if state["crash"]:
                state["crash"] = False
                late_source.options(id="late")()
                raise Crash()

        @app.workflow(name="asker")
        def asker() -> list[Any]:
            seen = app.get_event("late", "v", timeout=0.1)
            create_then_crash()
            return [seen, app.get_event("late", "v", timeout=5)]

        return asker

    app2, _ = crash_then_recover(make_app, build, lambda asker: asker.options(id="ask")())
    assert app2.handle("ask").result(timeout=10) == [None, "now I exist"]
    recorded = db.execute(
        "SELECT step, name, kind, output FROM operations WHERE workflow_id = 'ask' ORDER BY step"
    ).fetchall()
    assert [(step, name, kind) for step, name, kind, _ in recorded] == [
        (1, "get_event:late:v", "get_event"),
        (2, "create_then_crash", "step"),
        (3, "get_event:late:v", "get_event"),
    ]
    assert recorded[0][3] == {"timeout": True}


def test_get_event_is_woken_by_a_notification_not_by_polling(
    app: durably.App, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-place waits check the database every POLL_INTERVAL when no notification comes;
    # at 30 s, a get_event (20 s timeout) that ends within 10 s was woken by NOTIFY.
    monkeypatch.setattr(waits, "POLL_INTERVAL", 30.0)

    @app.workflow
    def flow() -> None:
        durably.recv("go", timeout=10)
        durably.set_event("ready", 42)

    flow.options(id="nt").start()
    with background(lambda: app.get_event("nt", "ready", timeout=20)) as (thread, box):
        # The reader has looked once and found nothing: it is waiting.
        wait_until(lambda: blocked_in(thread, "wait", "notifier.py"), what="the reader waiting")
        wait_until(lambda: waiting(db, "nt", 1), what="the workflow waiting")
        app.send("nt", None, topic="go")
        thread.join(timeout=10)
    assert box == {"value": 42}


def test_get_event_in_a_workflow_parks_and_is_woken_by_the_event(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    # A 30 s fallback scan: the wake-up within 10 s comes from the event's notification.
    app = make_app(park_after=0.1, poll_interval=30)

    @app.workflow(name="setter")
    def setter() -> None:
        durably.recv("go", timeout=30)
        durably.set_event("ready", {"v": 1})

    @app.workflow(name="watcher")
    def watcher() -> Any:
        return app.get_event("setter-1", "ready", timeout=30)

    app.launch()
    setter.options(id="setter-1").start()
    watch = watcher.options(id="watcher-1").start()
    wait_until(
        lambda: (
            workflow_row(db, "watcher-1")["wait_kind"] == "event"
            and workflow_row(db, "watcher-1")["executor_id"] is None
        ),
        what="the watcher parked",
    )
    app.send("setter-1", "go", topic="go")
    assert watch.result(timeout=10) == {"v": 1}
    ((_step, name, kind, output),) = ops(db, "watcher-1")
    assert (name, kind, output) == ("get_event:setter-1:ready", "get_event", {"value": {"v": 1}})


def test_get_event_in_a_workflow_replays_the_value_it_saw(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        @app.workflow(name="source")
        def source(value: str) -> str:
            durably.set_event("v", value)
            return value

        @app.step(name="change_then_crash")
        def change_then_crash() -> None:
            if state["crash"]:
                state["crash"] = False
                source.options(id="src-2")("new")  # another workflow, same key
                raise Crash()

        @app.workflow(name="reader")
        def reader() -> list[Any]:
            seen = app.get_event("src", "v", timeout=5)
            change_then_crash()
            return [seen, app.get_event("src-2", "v", timeout=5)]

        return source, reader

    def start(wfs: Any) -> None:
        source, reader = wfs
        source.options(id="src")("old")
        reader.options(id="rd")()

    app2, _ = crash_then_recover(make_app, build, start)
    assert app2.handle("rd").result(timeout=10) == ["old", "new"]
    assert [(op[1], op[3]) for op in ops(db, "rd")] == [
        ("get_event:src:v", {"value": "old"}),
        ("change_then_crash", None),
        ("get_event:src-2:v", {"value": "new"}),
    ]


def test_an_event_set_while_the_waiter_parks_still_wakes_it(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], schema: str
) -> None:
    """A parked get_event checks "is the event set?" and commits; an event set in
    between must wake it at once, not at its timeout (no lost wake-up)."""
    app = make_app(park_after=0.1, poll_interval=30)
    other = make_app(poll_interval=30)  # the setter runs in another "process"

    @app.workflow(name="watcher")
    def watcher() -> Any:
        return app.get_event("setter-2", "ready", timeout=20)

    gate, at_gate = threading.Event(), threading.Event()

    @other.step(name="gated")
    def gated() -> None:
        at_gate.set()
        assert gate.wait(10)

    @other.workflow(name="setter")
    def setter() -> None:
        gated()
        durably.set_event("ready", "in between")

    app.launch()
    other.launch()
    setter.options(id="setter-2").start()
    assert at_gate.wait(10)
    slow_down_parking(db, "event", 1.0)
    watch = watcher.options(id="watcher-2").start()
    wait_until(lambda: parking_in_progress(db, schema), what="the park in progress")
    gate.set()  # the event is set while the park is in progress
    try:
        result = watch.result(timeout=8)
    except durably.ResultTimeout:
        pytest.fail(f"lost wake-up: parked until {workflow_row(db, 'watcher-2')['wake_at']}")
    assert result == "in between"


# ------------------------------------------------------------------------ streams


def test_a_stream_is_read_live_and_from_an_offset(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def producer() -> str:
        for value in MIXED[:3]:
            durably.write_stream("s", value)
        durably.recv("more", timeout=10)
        for value in MIXED[3:]:
            durably.write_stream("s", value)
        durably.write_stream("other", "elsewhere")
        durably.close_stream("s")
        durably.recv("finish", timeout=10)
        return "done"

    handle = producer.options(id="pr").start()
    reader = app.read_stream("pr", "s")
    # Live: the first values arrive while the writer is still running.
    assert [next(reader) for _ in range(3)] == MIXED[:3]
    assert handle.status() is durably.Status.PENDING
    app.send("pr", None, topic="more")
    assert list(reader) == MIXED[3:]  # ends at the close, while the writer still runs
    assert handle.status() is durably.Status.PENDING
    assert list(app.read_stream("pr", "s", offset=2)) == MIXED[2:]
    assert list(app.read_stream("pr", "s", offset=len(MIXED))) == []
    other = app.read_stream("pr", "other")  # never closed: it ends with its workflow
    assert next(other) == "elsewhere"
    app.send("pr", None, topic="finish")
    assert list(other) == []
    assert handle.result(timeout=10) == "done"
    assert list(app.read_stream("pr", "nothing")) == []

    async def read_async() -> list[Any]:
        return [v async for v in app.read_stream_async("pr", "s", offset=1)]

    assert asyncio.run(read_async()) == MIXED[1:]


def test_read_stream_with_a_timeout_raises_when_nothing_new_comes(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """Going quiet is not the end of a stream: StreamTimeout says so, and where to go on;
    a closed stream or a finished writer still ends the iteration."""

    @app.workflow
    def producer() -> str:
        durably.write_stream("s", "only")
        durably.write_stream("done", "x")
        durably.close_stream("done")
        return durably.recv("finish", timeout=30)

    handle = producer.options(id="tmo").start()
    wait_until(lambda: waiting(db, "tmo", 4), what="the writer waiting")
    seen: list[Any] = []
    with pytest.raises(durably.StreamTimeout) as quiet:
        for value in app.read_stream("tmo", "s", timeout=0.2):
            seen.append(value)
    assert seen == ["only"]
    assert (quiet.value.workflow_id, quiet.value.key, quiet.value.offset) == ("tmo", "s", 1)
    assert "still open" in str(quiet.value) and "offset=1" in str(quiet.value)
    assert isinstance(quiet.value, durably.Timeout) and isinstance(quiet.value, TimeoutError)
    with pytest.raises(durably.StreamTimeout) as again:
        list(app.read_stream("tmo", "s", offset=quiet.value.offset, timeout=0))
    assert again.value.offset == 1

    async def read_async(key: str) -> list[Any]:
        return [v async for v in app.read_stream_async("tmo", key, timeout=0.2)]

    with pytest.raises(durably.StreamTimeout, match="'s'"):
        asyncio.run(read_async("s"))
    assert asyncio.run(read_async("done")) == ["x"]  # closed: ends normally
    assert list(app.read_stream("tmo", "done", timeout=0.2)) == ["x"]
    app.send("tmo", "bye", topic="finish")
    assert handle.result(timeout=10) == "bye"
    # The writer finished: its streams end, timeout or not.
    assert list(app.read_stream("tmo", "s", timeout=0.2)) == ["only"]
    assert asyncio.run(read_async("s")) == ["only"]


def test_result_timeout_is_a_timeout(app: durably.App) -> None:
    @app.workflow
    def slow() -> str:
        return str(durably.recv("never", timeout=30))

    handle = slow.start()
    with pytest.raises(durably.Timeout) as waited:
        handle.result(timeout=0)
    assert isinstance(waited.value, durably.ResultTimeout)
    assert isinstance(waited.value, TimeoutError)
    app.cancel(handle.id)


def test_reading_past_the_end_of_a_closed_stream_ends_at_once(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def producer() -> str:
        durably.write_stream("s", "a")
        durably.write_stream("s", "b")
        durably.close_stream("s")
        return durably.recv("finish", timeout=30)

    handle = producer.options(id="past").start()
    wait_until(lambda: waiting(db, "past", 4), what="the writer waiting, stream closed")
    # The stream is closed: whatever the offset, the reader has nothing more to wait for.
    with background(lambda: list(app.read_stream("past", "s", offset=5))) as (thread, box):
        thread.join(timeout=5)
    finished = not thread.is_alive()
    app.send("past", "bye", topic="finish")
    assert handle.result(timeout=10) == "bye"
    assert finished, "read_stream(offset=5) of a closed 2-entry stream waited for the writer"
    assert box == {"value": []}


def test_a_stream_ends_when_its_writer_ends_without_closing_it(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def succeeds() -> str:
        durably.write_stream("s", "a")
        return "ok"

    @app.workflow
    def fails() -> str:
        durably.write_stream("s", "b")
        raise ValueError("broken")

    @app.workflow
    def waits_forever() -> Any:
        durably.write_stream("s", "c")
        return durably.recv("never", timeout=30)

    assert succeeds.options(id="ok")() == "ok"
    assert list(app.read_stream("ok", "s")) == ["a"]
    with pytest.raises(ValueError, match="broken"):
        fails.options(id="err")()
    assert list(app.read_stream("err", "s")) == ["b"]

    waits_forever.options(id="cx").start()
    with background(lambda: list(app.read_stream("cx", "s"))) as (thread, box):
        wait_until(lambda: waiting(db, "cx", 2), what="the writer waiting")
        assert thread.is_alive()  # the writer may still write: the reader waits
        app.cancel("cx")
        thread.join(timeout=10)
    assert box == {"value": ["c"]}
    with pytest.raises(durably.WorkflowCancelled):
        app.handle("cx").result(timeout=10)


def test_a_recovered_writer_never_duplicates_stream_entries(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    state = {"crash": True}

    def build(app: durably.App) -> Any:
        @app.step(name="maybe_crash")
        def maybe_crash() -> None:
            if state["crash"]:
                state["crash"] = False
                raise Crash()

        @app.workflow(name="writer")
        def writer() -> str:
            durably.write_stream("s", "one")
            durably.write_stream("s", {"two": 2})
            maybe_crash()
            durably.write_stream("s", "three")
            durably.close_stream("s")
            return "written"

        return writer

    app2, _ = crash_then_recover(make_app, build, lambda wf: wf.options(id="wr")())
    assert app2.handle("wr").result(timeout=10) == "written"
    assert list(app2.read_stream("wr", "s")) == ["one", {"two": 2}, "three"]
    rows = db.execute(
        "SELECT step, value, closed FROM streams WHERE workflow_id = 'wr' ORDER BY step"
    ).fetchall()
    assert rows == [(1, "one", False), (2, {"two": 2}, False), (4, "three", False), (5, None, True)]
    assert [op[2] for op in ops(db, "wr")] == [
        "write_stream",
        "write_stream",
        "step",
        "write_stream",
        "close_stream",
    ]


def test_async_events_and_streams(app: durably.App) -> None:
    @app.workflow
    async def aflow() -> str:
        await durably.set_event_async("k", "v1")
        await durably.write_stream_async("s", 1)
        await durably.write_stream_async("s", 2)
        await durably.close_stream_async("s")
        await durably.set_event_async("k", "v2")
        return "ok"

    async def main() -> tuple[Any, ...]:
        result = await aflow.options(id="af")()
        values = [v async for v in app.read_stream_async("af", "s")]
        return result, values, await app.get_event_async("af", "k", timeout=1)

    assert asyncio.run(main()) == ("ok", [1, 2], "v2")


# ------------------------------------------------------------------------ errors


def test_events_and_streams_outside_a_workflow_are_errors(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.step
    def writes_in_step() -> None:
        durably.write_stream("s", 1)

    @app.step
    def closes_in_step() -> None:
        durably.close_stream("s")

    @app.workflow
    def wf() -> list[str]:
        refused = []
        for step in (writes_in_step, closes_in_step):
            try:
                step()
            except durably.NotInWorkflow:
                refused.append(step.spec.name)
        return refused

    before = snapshot(db)
    for call in (
        lambda: durably.set_event("k", 1),
        lambda: durably.write_stream("s", 1),
        lambda: durably.close_stream("s"),
        lambda: asyncio.run(durably.set_event_async("k", 1)),
        lambda: asyncio.run(durably.write_stream_async("s", 1)),
        lambda: asyncio.run(durably.close_stream_async("s")),
    ):
        with pytest.raises(durably.NotInWorkflow):
            call()
    assert snapshot(db) == before
    assert wf.options(id="w")() == [writes_in_step.spec.name, closes_in_step.spec.name]
    assert db.execute("SELECT count(*) FROM streams").fetchone() == (0,)


def test_bad_event_and_stream_arguments_are_refused_and_change_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    @app.workflow
    def wf() -> list[str]:
        refused = []
        for call in (
            lambda: durably.set_event("", 1),
            lambda: durably.set_event(5, 1),  # type: ignore[arg-type]
            lambda: durably.set_event("k", object()),
            lambda: durably.write_stream("", 1),
            lambda: durably.write_stream("s", {1j}),
            lambda: durably.close_stream(None),  # type: ignore[arg-type]
        ):
            try:
                call()
            except (durably.InvalidArgument, durably.ValueEncodingError) as exc:
                refused.append(type(exc).__name__)
        durably.set_event("k", "fine")  # the refused calls took no step number
        return refused

    assert wf.options(id="bad")() == ["InvalidArgument"] * 2 + ["ValueEncodingError"] + [
        "InvalidArgument",
        "ValueEncodingError",
        "InvalidArgument",
    ]
    assert [(op[0], op[2]) for op in ops(db, "bad")] == [(1, "set_event")]
    assert db.execute("SELECT count(*) FROM streams").fetchone() == (0,)

    before = snapshot(db)
    for call in (
        lambda: app.get_event("bad", "k", timeout=-1),
        lambda: app.get_event("bad", "", timeout=0),
        lambda: app.get_event("", "k", timeout=0),
        lambda: app.get_all_events(5),  # type: ignore[arg-type]
        lambda: list(app.read_stream("bad", "s", offset=-1)),
        lambda: list(app.read_stream("bad", "s", offset=True)),  # type: ignore[arg-type]
        lambda: list(app.read_stream("bad", "", offset=0)),
        lambda: list(app.read_stream("bad", "s", timeout=-1)),
    ):
        with pytest.raises(durably.InvalidArgument):
            call()
    assert snapshot(db) == before


def test_reading_the_stream_of_an_unknown_workflow_is_an_error_and_changes_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    before = snapshot(db)
    with pytest.raises(durably.WorkflowNotFound, match="ghost"):
        list(app.read_stream("ghost", "s"))
    assert snapshot(db) == before
