"""Queues in one process: limits, priority, deduplication, partitions, delays, debounce,
and bad input. Limits are checked from the database while work runs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import durably
from queueprocs.util import Sampler, max_overlap, statuses
from support import wait_until

GATE_TIMEOUT = 30.0


class Gates:
    """Named threading.Events that workflow bodies wait on, with a record of every run."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.runs: list[tuple[str, float, float]] = []  # (key, start, end), monotonic
        self.waiting: set[str] = set()  # bodies waiting at their gate now

    def event(self, key: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(key, threading.Event())

    def open(self, *keys: str) -> None:
        for key in keys:
            self.event(key).set()

    def wait(self, key: str) -> None:
        start = time.monotonic()
        with self._lock:
            self.waiting.add(key)
        try:
            if not self.event(key).wait(GATE_TIMEOUT):
                raise TimeoutError(f"gate {key} never opened")
        finally:
            with self._lock:
                self.waiting.discard(key)
        with self._lock:
            self.runs.append((key, start, time.monotonic()))

    def started(self) -> list[str]:
        with self._lock:
            return [key for key, _, _ in self.runs]


def gated_workflow(
    app: durably.App, gates: Gates, name: str = "gated"
) -> durably.Workflow[..., str]:
    @app.workflow(name=name)
    def gated(key: str) -> str:
        gates.wait(key)
        return f"done {key}"

    return gated


def count(db: psycopg.Connection[Any], query: str = "SELECT count(*) FROM workflows") -> int:
    row = db.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def started_order(db: psycopg.Connection[Any], queue: str) -> list[str]:
    rows = db.execute(
        "SELECT id FROM workflows WHERE queue_name = %s ORDER BY started_at", (queue,)
    ).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------- concurrency and rates


def test_concurrency_one_holds_while_the_first_runs(
    app: durably.App, db: psycopg.Connection[Any], pg_url: str, schema: str
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    one = app.queue("one", concurrency=1)
    probe = app.queue("probe")
    ids = ["w0", "w1", "w2"]
    query = "SELECT count(*) FROM workflows WHERE queue_name = 'one' AND status = 'PENDING'"
    with Sampler(pg_url, schema, query) as sampler:
        handles = [one.enqueue(gated.options(id=i), i) for i in ids]
        wait_until(lambda: statuses(db, ["w0"]) == {"w0": "PENDING"}, what="w0 running")
        # A later claim pass (the probe runs after it) still leaves w1 and w2 waiting.
        gates.open("probe")
        assert probe.enqueue(gated, "probe").result(timeout=10) == "done probe"
        assert statuses(db, ids) == {"w0": "PENDING", "w1": "ENQUEUED", "w2": "ENQUEUED"}
        for i, key in enumerate(ids):
            gates.open(key)
            assert handles[i].result(timeout=10) == f"done {key}"
            if i + 1 < len(ids):
                nxt = ids[i + 1]
                wait_until(lambda n=nxt: statuses(db, [n])[n] == "PENDING", what=nxt)
    assert max(n for [(n,)] in sampler.samples) == 1
    assert started_order(db, "one") == ids
    runs = [(s, e) for key, s, e in gates.runs if key != "probe"]
    assert max_overlap(runs) == 1


def test_rate_limit_five_per_two_seconds(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    app = make_app(poll_interval=0.1)

    @app.workflow(name="tick")
    def tick(i: int) -> int:
        return i

    limited = app.queue("limited", rate_limit=(5, 2.0))
    app.launch()
    handles = [limited.enqueue(tick, i) for i in range(15)]
    assert [h.result(timeout=20) for h in handles] == list(range(15))
    rows = db.execute(
        "SELECT started_at FROM workflows WHERE queue_name = 'limited' ORDER BY started_at"
    ).fetchall()
    starts = [r[0] for r in rows]
    assert len(starts) == 15
    window = timedelta(seconds=2)
    spans = [starts[i + 5] - starts[i] for i in range(len(starts) - 5)]
    assert all(span >= window for span in spans), [s.total_seconds() for s in spans]


def test_a_rate_limited_queue_wakes_when_its_window_opens(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """With the next heartbeat (whose survey finds ready work) fifteen minutes away, only
    the window's own timer can start the work that waits behind a full window: all of it
    finishes well before that."""
    app = make_app(poll_interval=3600, lease=3600)

    @app.workflow(name="tock")
    def tock(i: int) -> int:
        return i

    limited = app.queue("window", rate_limit=(2, 0.5))
    app.launch()
    handles = [limited.enqueue(tock, i) for i in range(6)]
    assert [h.result(timeout=30) for h in handles] == list(range(6))
    rows = db.execute(
        "SELECT started_at FROM workflows WHERE queue_name = 'window' ORDER BY started_at"
    ).fetchall()
    starts = [r[0] for r in rows]
    spans = [starts[i + 2] - starts[i] for i in range(len(starts) - 2)]
    assert all(span >= timedelta(seconds=0.5) for span in spans), spans


def test_a_small_queue_is_not_starved_behind_a_deep_one(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], pg_url: str, schema: str
) -> None:
    """Fair dequeue: each queue is claimed up to its own share in every dispatch round,
    so ten items behind a 2,000-deep queue on the same worker start in the first round
    rather than after the backlog."""
    app = make_app()

    @app.workflow(name="noop")
    def noop(i: int) -> int:
        return i

    app.queue("big")
    app.queue("small")
    app.engine  # declares the queues, runs nothing yet  # noqa: B018
    with durably.Client(pg_url, schema=schema) as client:  # enqueues without a worker
        deep = [client.enqueue("big", "noop", i) for i in range(2000)]
        few = [client.enqueue("small", "noop", i) for i in range(10)]
    app.launch()
    deep = [app.handle(h.id) for h in deep]
    few = [app.handle(h.id) for h in few]
    assert [h.result(timeout=60) for h in few] == list(range(10))
    assert deep[-1].result(timeout=120) == 1999
    big_starts = [
        r[0]
        for r in db.execute(
            "SELECT started_at FROM workflows WHERE queue_name = 'big' ORDER BY started_at"
        ).fetchall()
    ]
    last_small = db.execute(
        "SELECT max(started_at) FROM workflows WHERE queue_name = 'small'"
    ).fetchone()[0]
    # One round claims at most a worker's share of each queue (100 here).
    assert last_small <= big_starts[200], (last_small, big_starts[200])


# ---------------------------------------------------------------- priority


def test_priority_order_behind_a_blocker(app: durably.App, db: psycopg.Connection[Any]) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    prio = app.queue("prio", concurrency=1, priority=True)
    blocker = prio.enqueue(gated.options(id="blocker"), "blocker")
    wait_until(lambda: statuses(db, ["blocker"]) == {"blocker": "PENDING"}, what="blocker")
    items = {"p5": 5, "p1": 1, "p3": 3, "none": None, "p2": 2}
    for key in items:
        gates.open(key)
    handles = [
        gated.options(queue="prio", id=key, priority=p).start(key) for key, p in items.items()
    ]
    assert statuses(db, items) == dict.fromkeys(items, "ENQUEUED")
    gates.open("blocker")
    assert blocker.result(timeout=10) == "done blocker"
    for h in handles:
        h.result(timeout=10)
    expected = ["blocker", "none", "p1", "p2", "p3", "p5"]
    assert started_order(db, "prio") == expected
    assert gates.started() == expected
    stored = dict(db.execute("SELECT id, priority FROM workflows").fetchall())
    assert stored == {"blocker": None, **items}


@pytest.mark.parametrize("priority", [0, -1, 2**31, "1", 1.0, True])
def test_out_of_range_priority_is_refused(
    app: durably.App, db: psycopg.Connection[Any], priority: Any
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("prio", priority=True)
    with pytest.raises(durably.InvalidArgument, match="priority"):
        gated.options(queue="prio", priority=priority).start("x")
    assert count(db) == 0


def test_priority_bounds_are_accepted(app: durably.App, db: psycopg.Connection[Any]) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("prio", priority=True)
    gates.open("lo", "hi")
    hi = gated.options(queue="prio", priority=2**31 - 1).start("hi")
    lo = gated.options(queue="prio", priority=1).start("lo")
    assert (hi.result(timeout=10), lo.result(timeout=10)) == ("done hi", "done lo")


def test_priority_on_a_queue_without_priority_is_refused(
    app: durably.App, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("plain")
    with pytest.raises(durably.InvalidArgument, match="priority"):
        gated.options(queue="plain", priority=1).start("x")
    # The same from an app that did not declare the queue (it reads the declaration).
    other = make_app()
    other_gated = gated_workflow(other, gates)
    other.launch(queues=[])
    with pytest.raises(durably.InvalidArgument, match="priority"):
        other_gated.options(queue="plain", priority=1).start("x")
    assert count(db) == 0


def test_bad_queue_options_are_refused(app: durably.App, db: psycopg.Connection[Any]) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    with pytest.raises(durably.InvalidArgument):
        gated.options(queue="").start("x")
    with pytest.raises(durably.InvalidArgument, match="queue"):
        gated.options(priority=1).start("x")  # queued options without a queue
    with pytest.raises(durably.ConfigurationError, match="ghost"):
        app.launch(queues=["ghost"])  # already launched, but still checked
    assert count(db) == 0


def test_work_on_a_queue_nobody_declared_waits_for_its_declaration(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Enqueue never needs the queue's row: the work waits ENQUEUED (said once, as a
    warning) until an app declares the queue, and runs there."""
    gates = Gates()
    starter = make_app(lease=3600.0)
    gated = gated_workflow(starter, gates)
    starter.launch(queues=[])
    with caplog.at_level(logging.WARNING, logger="durably"):
        first = gated.options(queue="later", id="first").start("first")
        second = gated.options(queue="later", id="second", delay=0).start("second")
    said = [r.getMessage() for r in caplog.records if "not declared yet" in r.getMessage()]
    assert len(said) == 1 and "'later'" in said[0], said
    assert statuses(db, ["first", "second"]) == {"first": "ENQUEUED", "second": "ENQUEUED"}
    assert count(db, "SELECT count(*) FROM queues") == 0

    worker = make_app()
    gated_workflow(worker, gates)
    worker.queue("later")
    worker.launch()
    gates.open("first", "second")
    assert (first.result(timeout=10), second.result(timeout=10)) == ("done first", "done second")
    assert [run[0] for run in gates.runs] == ["first", "second"]


@pytest.mark.parametrize("declared_with_priority", [True, False])
def test_a_priority_given_before_the_queue_is_declared(
    make_app: Callable[..., durably.App],
    db: psycopg.Connection[Any],
    declared_with_priority: bool,
) -> None:
    """Nobody can tell yet whether the queue takes priorities: the priority is kept, and
    dropped when the queue is declared without them (its work then runs in enqueue
    order, as on any queue without priorities)."""
    gates = Gates()
    starter = make_app(lease=3600.0)
    gated = gated_workflow(starter, gates)
    starter.launch(queues=[])
    plain = gated.options(queue="undecided", id="plain").start("plain")
    ranked = gated.options(queue="undecided", id="ranked", priority=5).start("ranked")
    stored = dict(db.execute("SELECT id, priority FROM workflows").fetchall())
    assert stored == {"plain": None, "ranked": 5}

    worker = make_app()
    gated_workflow(worker, gates)
    worker.queue("undecided", priority=declared_with_priority)
    worker.engine  # noqa: B018 - connecting declares the queue (launching would claim)
    stored = dict(db.execute("SELECT id, priority FROM workflows").fetchall())
    assert stored == {"plain": None, "ranked": 5 if declared_with_priority else None}
    if not declared_with_priority:  # from now on the declaration is known: refused
        with pytest.raises(durably.InvalidArgument, match="priority=True"):
            gated.options(queue="undecided", priority=1).start("x")
    worker.launch()
    gates.open("plain", "ranked")
    assert (plain.result(timeout=10), ranked.result(timeout=10)) == ("done plain", "done ranked")


# ---------------------------------------------------------------- identity and dedup


def test_same_workflow_id_enqueued_twice_runs_once(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    runs: list[int] = []

    @app.workflow(name="once")
    def once(x: int) -> int:
        runs.append(x)
        return x * 10

    @app.workflow(name="different")
    def different(x: int) -> int:
        return x

    q = app.queue("q")
    first = once.options(id="same", queue="q").start(1)
    second = q.enqueue(once.options(id="same"), 2)
    assert first.id == second.id == "same"
    assert first.result(timeout=10) == 10
    # Again after it finished: the same workflow, not a new run.
    third = once.options(id="same", queue="q").start(3)
    assert third.result(timeout=10) == 10
    assert runs == [1]
    assert count(db) == 1
    with pytest.raises(durably.WorkflowConflict):
        different.options(id="same", queue="q").start(4)
    assert count(db) == 1


def test_dedup_raise_and_return_existing(app: durably.App, db: psycopg.Connection[Any]) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("dd")
    holder = gated.options(queue="dd", dedup_key="k", id="holder").start("holder")
    with pytest.raises(durably.DuplicateWorkflow) as info:
        gated.options(queue="dd", dedup_key="k").start("again")
    assert (info.value.queue, info.value.dedup_key, info.value.holder) == ("dd", "k", "holder")
    existing = gated.options(queue="dd", dedup_key="k", if_duplicate="existing").start("again")
    assert existing.id == "holder"
    # The key is per queue.
    app.queue("dd2")
    gates.open("elsewhere")
    assert gated.options(queue="dd2", dedup_key="k").start("elsewhere").result(timeout=10)
    assert count(db, "SELECT count(*) FROM workflows WHERE queue_name = 'dd'") == 1
    gates.open("holder")
    assert holder.result(timeout=10) == "done holder"
    assert gates.started().count("holder") == 1


def test_dedup_key_is_free_again_after_completion_and_after_cancel(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("dd")
    gates.open("first", "second")
    first = gated.options(queue="dd", dedup_key="k", id="first").start("first")
    assert first.result(timeout=10) == "done first"
    second = gated.options(queue="dd", dedup_key="k", id="second").start("second")
    assert second.result(timeout=10) == "done second"

    waiting = gated.options(queue="dd", dedup_key="k", id="waiting", delay=3600).start("waiting")
    assert waiting.status() is durably.Status.DELAYED
    with pytest.raises(durably.DuplicateWorkflow):  # a delayed workflow holds the key
        gated.options(queue="dd", dedup_key="k").start("x")
    app.cancel("waiting")
    assert waiting.status() is durably.Status.CANCELLED
    gates.open("after-cancel")
    after = gated.options(queue="dd", dedup_key="k", id="after-cancel").start("after-cancel")
    assert after.result(timeout=10) == "done after-cancel"

    # Cancelling a running holder frees the key too.
    running = gated.options(queue="dd", dedup_key="k", id="running").start("running")
    wait_until(lambda: statuses(db, ["running"]) == {"running": "PENDING"}, what="running")
    app.cancel("running")
    gates.open("after-running")
    last = gated.options(queue="dd", dedup_key="k", id="after-running").start("after-running")
    assert last.result(timeout=10) == "done after-running"
    gates.open("running")
    with pytest.raises(durably.WorkflowCancelled):
        running.result(timeout=10)
    assert statuses(db, ["first", "second", "waiting", "after-cancel", "running"]) == {
        "first": "SUCCESS",
        "second": "SUCCESS",
        "waiting": "CANCELLED",
        "after-cancel": "SUCCESS",
        "running": "CANCELLED",
    }


# ---------------------------------------------------------------- partitions


def test_a_blocked_partition_does_not_block_another(
    app: durably.App, db: psycopg.Connection[Any], pg_url: str, schema: str
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("parts", partition_concurrency=1)
    gates.open("b1", "b2", "b3", "free")
    query = (
        "SELECT partition_key, count(*) FROM workflows WHERE queue_name = 'parts' "
        "AND status = 'PENDING' GROUP BY partition_key"
    )
    with Sampler(pg_url, schema, query) as sampler:

        def put(key: str, partition: str | None) -> durably.WorkflowHandle[Any]:
            wf = gated.options(queue="parts", id=key)
            if partition is not None:
                wf = wf.options(partition_key=partition)
            return wf.start(key)

        a1 = put("a1", "A")
        wait_until(lambda: statuses(db, ["a1"]) == {"a1": "PENDING"}, what="a1 running")
        a2 = put("a2", "A")
        others = [put("b1", "B"), put("b2", "B"), put("b3", "B"), put("free", None)]
        assert [h.result(timeout=10) for h in others] == [
            "done b1",
            "done b2",
            "done b3",
            "done free",
        ]
        assert statuses(db, ["a1", "a2"]) == {"a1": "PENDING", "a2": "ENQUEUED"}
        gates.open("a1", "a2")
        assert (a1.result(timeout=10), a2.result(timeout=10)) == ("done a1", "done a2")
    per_partition = [n for sample in sampler.samples for key, n in sample if key is not None]
    assert max(per_partition) == 1
    order = started_order(db, "parts")
    assert order.index("b1") < order.index("b2") < order.index("b3")
    assert order.index("a1") < order.index("a2")
    runs = {key: (s, e) for key, s, e in gates.runs}
    assert max_overlap([runs["b1"], runs["b2"], runs["b3"]]) == 1
    assert max_overlap([runs["a1"], runs["a2"]]) == 1


# ---------------------------------------------------------------- delays


def test_delay_is_listed_and_set_delay_runs_it_sooner(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("later")
    gates.open("d1", "d2")
    d1 = gated.options(queue="later", id="d1", delay=3600).start("d1")
    d2 = gated.options(queue="later", id="d2", delay=timedelta(hours=1)).start("d2")
    assert d1.status() is durably.Status.DELAYED
    listed = app.list_workflows(status="DELAYED")
    assert [(w.id, w.status) for w in listed] == [
        ("d1", durably.Status.DELAYED),
        ("d2", durably.Status.DELAYED),
    ]
    assert [w.id for w in app.list_workflows(status=["ENQUEUED", "DELAYED"])] == ["d1", "d2"]

    with pytest.raises(durably.InvalidArgument):
        app.set_delay("d1", datetime.now() + timedelta(seconds=1))  # naive
    for negative in (-1, timedelta(seconds=-1)):
        with pytest.raises(durably.InvalidArgument, match=r"negative|>= 0"):
            app.set_delay("d1", negative)
    assert app.set_delay("d1", timedelta(hours=2)) is True  # later still
    assert d1.status() is durably.Status.DELAYED

    assert app.set_delay("d1", 0) is True
    assert d1.result(timeout=10) == "done d1"
    assert app.set_delay("d1", 10) is False  # it already ran
    assert app.set_delay("d2", datetime.now(UTC)) is True
    assert d2.result(timeout=10) == "done d2"
    with pytest.raises(durably.WorkflowNotFound):
        app.set_delay("no-such-workflow", 0)


def test_delay_until_an_absolute_time(app: durably.App, db: psycopg.Connection[Any]) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("later")
    gates.open("at", "past")
    when = datetime.now(UTC) + timedelta(seconds=1)
    at = gated.options(queue="later", id="at", delay=when).start("at")
    past = gated.options(queue="later", id="past", delay=when - timedelta(hours=1)).start("past")
    assert past.result(timeout=10) == "done past"
    assert at.result(timeout=10) == "done at"
    row = db.execute("SELECT started_at FROM workflows WHERE id = 'at'").fetchone()
    assert row is not None
    assert row[0] >= when  # a delay is a promise about time: never before it


def test_naive_datetime_and_negative_delay_are_refused(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("later")
    naive = datetime.now() + timedelta(seconds=60)
    with pytest.raises(durably.InvalidArgument, match="timezone-aware"):
        gated.options(queue="later", delay=naive).start("x")
    for bad in (-1, "10", float("nan"), True):
        with pytest.raises(durably.InvalidArgument, match="delay"):
            gated.options(queue="later", delay=bad).start("x")
    assert count(db) == 0


# ---------------------------------------------------------------- debounce


def test_debounce_runs_once_with_the_last_arguments(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    calls: list[int] = []

    @app.workflow(name="flush")
    def flush(n: int) -> int:
        calls.append(n)
        return n

    q = app.queue("deb")
    handles = [q.debounce("user-1", 1.0, flush, n) for n in (1, 2, 3)]
    assert len({h.id for h in handles}) == 1
    assert handles[0].result(timeout=10) == 3
    assert calls == [3]
    assert count(db, "SELECT count(*) FROM workflows WHERE queue_name = 'deb'") == 1
    # A call after the run started makes a new run.
    again = q.debounce("user-1", 0.0, flush, 4)
    assert again.id != handles[0].id
    assert again.result(timeout=10) == 4
    assert calls == [3, 4]


def test_debounce_bad_input_is_refused(app: durably.App, db: psycopg.Connection[Any]) -> None:
    @app.workflow(name="flush")
    def flush(n: int) -> int:
        return n

    q = app.queue("deb")
    for args, kwargs in [
        (("", 1.0), {}),
        (("k", -1.0), {}),
        (("k", "1"), {}),
        (("k", 1.0), {"max_wait": -1}),
    ]:
        with pytest.raises(durably.InvalidArgument):
            q.debounce(*args, flush, 1, **kwargs)
    with pytest.raises(durably.DurablyError, match="workflow"):
        q.debounce("k", 1.0, lambda n: n, 1)  # type: ignore[arg-type]
    assert count(db) == 0


def test_debounce_max_wait_caps_the_wait(app: durably.App, db: psycopg.Connection[Any]) -> None:
    """Period 1 s, max_wait 1.5 s, a call every 0.3 s for 3 s: without max_wait nothing
    would start until 1 s after the last call; with it a run starts about 1.5 s after the
    first call of each burst, with the latest arguments so far."""

    @app.workflow(name="flush")
    def flush(n: int) -> int:
        return n

    q = app.queue("deb")
    ids: list[str] = []
    first_call = time.monotonic()
    for n in range(10):
        # Pacing the calls (this is what is being tested), not waiting for anything.
        time.sleep(max(0.0, first_call + 0.3 * n - time.monotonic()))
        ids.append(q.debounce("k", 1.0, flush, n, max_wait=1.5).id)
    runs = list(dict.fromkeys(ids))
    assert 2 <= len(runs) <= 3, ids
    results = [app.handle(i).result(timeout=10) for i in runs]
    assert results == sorted(results)
    assert results[-1] == 9  # the last call's arguments
    rows = db.execute(
        "SELECT id, enqueued_at, started_at FROM workflows WHERE queue_name = 'deb' "
        "ORDER BY enqueued_at"
    ).fetchall()
    assert [r[0] for r in rows] == runs
    waits = [(started - enqueued).total_seconds() for _, enqueued, started in rows]
    # Capped at 1.5 s after the first call of the run (plus claim latency), never sooner.
    assert waits[0] >= 1.5 - 1e-3, waits
    assert all(w <= 1.5 + 0.5 for w in waits), waits


def test_debounce_max_wait_shorter_than_the_period(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """A single call with period 30 s and max_wait 0.5 s must start within about 0.5 s of
    the call ("no later than that long after the first call")."""

    @app.workflow(name="flush")
    def flush(n: int) -> int:
        return n

    q = app.queue("deb")
    handle = q.debounce("k", 30.0, flush, 1, max_wait=0.5)
    row = db.execute(
        "SELECT available_at - enqueued_at FROM workflows WHERE id = %s", (handle.id,)
    ).fetchone()
    assert row is not None
    assert row[0] <= timedelta(seconds=0.5), f"planned start {row[0]} after the first call"
    assert handle.result(timeout=10) == 1


# ---------------------------------------------------------------- listening


def test_a_worker_listening_to_some_queues_does_not_claim_from_others(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    gates = Gates()
    gates.open("in-a", "in-b")

    def build(executor: str, listen: list[str]) -> tuple[durably.App, durably.Workflow[..., str]]:
        # A heartbeat every 0.5 s (lease/3) and a claim pass every 0.1 s at most.
        made = make_app(executor_id=executor, poll_interval=0.1, lease=1.5)
        wf = gated_workflow(made, gates)
        made.queue("a")
        made.queue("b")
        made.launch(queues=listen)
        return made, wf

    def heartbeat(executor: str) -> Any:
        row = db.execute("SELECT heartbeat_at FROM executors WHERE id = %s", (executor,))
        return row.fetchone()

    _, wf_a = build("only-a", ["a"])
    in_b = wf_a.options(queue="b", id="in-b").start("in-b")
    in_a = wf_a.options(queue="a", id="in-a").start("in-a")  # notified after in-b
    assert in_a.result(timeout=10) == "done in-a"
    # Let several claim passes go by: wait for a later heartbeat of the same loop.
    beat = heartbeat("only-a")
    wait_until(lambda: heartbeat("only-a") != beat, what="a later heartbeat")
    assert statuses(db, ["in-b"]) == {"in-b": "ENQUEUED"}

    build("only-b", ["b"])
    assert in_b.result(timeout=10) == "done in-b"
    owners = dict(db.execute("SELECT id, executor_id FROM workflows").fetchall())
    assert owners == {"in-a": "only-a", "in-b": "only-b"}


# ---------------------------------------------------------------- from workflows, async


def test_enqueue_from_a_workflow_is_a_recorded_child(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    gates = Gates()
    gated = gated_workflow(app, gates)
    app.queue("kids", concurrency=1)

    @app.workflow(name="parent")
    def parent() -> list[str]:
        first = gated.options(queue="kids").start("k1")
        second = gated.options(queue="kids", id="named-kid").start("k2")
        return [first.id, second.id]

    gates.open("k1", "k2")
    ids = parent.options(id="mom").start().result(timeout=10)
    assert ids == ["mom-1", "named-kid"]
    assert [app.handle(i).result(timeout=10) for i in ids] == ["done k1", "done k2"]
    steps = app.list_steps("mom")
    assert [(s.step, s.kind, s.child_id) for s in steps] == [
        (1, "child", "mom-1"),
        (2, "child", "named-kid"),
    ]
    rows = db.execute(
        "SELECT id, queue_name, parent_id FROM workflows WHERE id <> 'mom' ORDER BY id"
    ).fetchall()
    assert rows == [("mom-1", "kids", "mom"), ("named-kid", "kids", "mom")]


def test_async_twins(app: durably.App, db: psycopg.Connection[Any]) -> None:
    calls: list[int] = []

    @app.workflow(name="twin")
    async def twin(n: int) -> int:
        calls.append(n)
        return n + 100

    q = app.queue("twins")

    async def main() -> tuple[int, int]:
        handle = await q.enqueue_async(twin, 1)
        debounced = [await q.debounce_async("k", 0.2, twin, n) for n in (2, 3)]
        assert debounced[0].id == debounced[1].id
        return await handle.result_async(timeout=10), await debounced[1].result_async(10)

    assert asyncio.run(main()) == (101, 103)
    assert sorted(calls) == [1, 3]


def test_timeout_of_queued_work_counts_from_its_start(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """A queued workflow's timeout is absolute once it starts: time spent waiting in the
    queue does not count against it."""
    gates = Gates()
    gated = gated_workflow(app, gates)
    q = app.queue("slow", concurrency=1)
    blocker = q.enqueue(gated, "blocker")
    wait_until(lambda: blocker.status() is durably.Status.PENDING, what="blocker running")
    gates.open("timed")
    timed = gated.options(queue="slow", id="timed", timeout=0.5).start("timed")

    def waited_longer_than_timeout() -> bool:
        row = db.execute(
            "SELECT clock_timestamp() - enqueued_at > interval '1 second', status "
            "FROM workflows WHERE id = 'timed'"
        ).fetchone()
        assert row is not None and row[1] == "ENQUEUED", row
        return bool(row[0])

    wait_until(waited_longer_than_timeout, what="1 s in the queue")
    gates.open("blocker")
    assert timed.result(timeout=10) == "done timed"
    row = db.execute(
        "SELECT status, timeout_seconds, started_at - enqueued_at > interval '1 second' "
        "FROM workflows WHERE id = 'timed'"
    ).fetchone()
    assert row == ("SUCCESS", 0.5, True)


def test_wake_up_of_a_parked_queued_workflow_keeps_worker_concurrency(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], pg_url: str, schema: str
) -> None:
    """worker_concurrency=1: n1 parks in a durable sleep, which frees the worker's slot,
    so n2 starts. When n1's sleep ends the worker must not run it next to n2."""
    app = make_app(park_after=0, poll_interval=0.1, lease=0.6)
    gates = Gates()
    gated = gated_workflow(app, gates)

    @app.workflow(name="napper")
    def napper(key: str) -> str:
        durably.sleep(0.3)
        gates.wait(key)
        return key

    q = app.queue("solo", worker_concurrency=1)
    app.launch()
    query = (
        "SELECT executor_id, count(*) FROM workflows WHERE queue_name = 'solo' "
        "AND status = 'PENDING' AND executor_id IS NOT NULL GROUP BY executor_id"
    )
    with Sampler(pg_url, schema, query) as sampler:
        n1 = q.enqueue(napper.options(id="n1"), "n1")
        n2 = q.enqueue(gated.options(id="n2"), "n2")
        wait_until(lambda: "n2" in gates.waiting, what="n2 running while n1 sleeps")

        def n1_had_its_chance() -> bool:
            if "n1" in gates.waiting:
                return True
            row = db.execute(
                "SELECT output #>> '{}' FROM operations WHERE workflow_id = 'n1' AND step = 1"
            ).fetchone()
            beat = db.execute(
                "SELECT heartbeat_at FROM executors WHERE id = %s", (app.executor_id,)
            ).fetchone()
            if row is None or beat is None:
                return False
            # Heartbeats come every 0.2 s from the loop that also wakes parked work
            # (every 0.1 s): half a second after the wake-up time, it had several tries.
            return bool(beat[0] > datetime.fromisoformat(row[0]) + timedelta(seconds=0.5))

        wait_until(n1_had_its_chance, what="n1's wake-up time to pass")
        both = {"n1", "n2"} <= gates.waiting
        gates.open("n1", "n2")
        assert (n1.result(timeout=10), n2.result(timeout=10)) == ("n1", "done n2")
    most = max(n for sample in sampler.samples for _, n in sample)
    assert most <= 1, f"{most} workflows of queue 'solo' (worker_concurrency=1) ran on one worker"
    assert not both, "n1 and n2 ran at once on a worker with worker_concurrency=1"


def test_a_worker_of_async_workflows_runs_more_of_a_queue_at_once_than_one_of_sync(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """Without worker_concurrency, a worker runs up to 100 of a queue's workflows at once
    when it has sync workflows (its threads run them), and up to 300 when every workflow
    it runs is async: 150 async ones waiting together are all running at once."""
    from durably.runtime.dispatch import local_capacity

    release = threading.Event()

    @app.workflow(name="wide.wait")
    async def wait_together(i: int) -> int:
        while not release.is_set():
            await asyncio.sleep(0.01)  # released by the test once all 150 run
        return i

    assert local_capacity([wait_together.spec]) == 300
    wide = app.queue("wide")
    handles = [wide.enqueue(wait_together, i) for i in range(150)]
    query = "SELECT count(*) FROM workflows WHERE queue_name = 'wide' AND status = 'PENDING'"
    try:
        wait_until(lambda: db.execute(query).fetchone() == (150,), what="all 150 running")
    finally:
        release.set()
    assert [h.result(timeout=30) for h in handles] == list(range(150))

    @app.workflow(name="wide.sync")
    def sync_one() -> None:
        return None

    assert local_capacity([wait_together.spec, sync_one.spec]) == 100
