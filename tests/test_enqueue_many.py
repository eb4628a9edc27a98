"""Enqueueing many runs at once (``enqueue_many``), and concurrent enqueues that the group
committer folds into one statement: every run goes in once, in order, and bad input
stores nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import durably
from durably.store import queue_statements
from queueprocs.util import max_overlap


def count(db: psycopg.Connection[Any], where: str = "true") -> int:
    row = db.execute(f"SELECT count(*) FROM workflows WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def test_enqueue_many_runs_each_once_in_the_order_given(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    queue = app.queue("many", worker_concurrency=1)

    @app.workflow(name="add")
    def add(a: int, b: int = 0) -> int:
        return a + b

    runs: list[Any] = [(i,) if i % 2 else {"a": i, "b": 100} for i in range(30)]
    handles = queue.enqueue_many(add, runs)
    assert [h.result(timeout=30) for h in handles] == [i if i % 2 else i + 100 for i in range(30)]
    # One worker slot: they started in the order given.
    started = db.execute(
        "SELECT id FROM workflows WHERE queue_name = 'many' ORDER BY started_at"
    ).fetchall()
    assert [row[0] for row in started] == [h.id for h in handles]


def test_enqueue_many_with_ids_attaches_to_existing_runs(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    queue = app.queue("ids")
    ran: list[int] = []

    @app.workflow(name="note")
    def note(n: int) -> int:
        ran.append(n)
        return n

    first = queue.enqueue_many(note, [(1,), (2,)], ids=["a", "b"])
    assert [h.result(timeout=30) for h in first] == [1, 2]
    # The same IDs again (and one twice in one call) run nothing more; a new one runs.
    again = queue.enqueue_many(note, [(1,), (2,), (2,), (3,)], ids=["a", "b", "b", "c"])
    assert [h.id for h in again] == ["a", "b", "b", "c"]
    assert [h.result(timeout=30) for h in again] == [1, 2, 2, 3]
    assert sorted(ran) == [1, 2, 3]
    assert count(db) == 3


def test_enqueue_many_refuses_bad_input_and_stores_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    queue = app.queue("bad")

    @app.workflow(name="one")
    def one(n: int) -> int:
        return n

    with pytest.raises(durably.InvalidArgument, match="run 1 of enqueue_many is a int"):
        queue.enqueue_many(one, [(1,), 2])
    with pytest.raises(TypeError, match="run 2 of enqueue_many"):
        queue.enqueue_many(one, [(1,), (2,), (1, 2, 3)])
    with pytest.raises(durably.InvalidArgument, match="one ID per run"):
        queue.enqueue_many(one, [(1,), (2,)], ids=["x"])
    with pytest.raises(durably.InvalidArgument, match="a list of runs"):
        queue.enqueue_many(one, (1,))  # type: ignore[arg-type]
    with pytest.raises(durably.InvalidArgument, match="a dedup_key names one run"):
        queue.enqueue_many(one.options(queue="bad", dedup_key="k"), [(1,)])
    with pytest.raises(durably.InvalidArgument, match="ids="):
        queue.enqueue_many(one.options(id="x"), [(1,)])
    with pytest.raises(durably.InvalidArgument, match="workflow id"):
        queue.enqueue_many(one, [(1,)], ids=[""])
    assert count(db) == 0


def test_enqueue_many_from_a_client_and_options_for_all(
    app: durably.App, pg_url: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    app.queue("client-many", priority=True)

    @app.workflow(name="double")
    def double(n: int) -> int:
        return 2 * n

    with durably.Client(pg_url, schema=schema) as client:
        handles = client.enqueue_many(
            "client-many", "double", [(n,) for n in range(5)], priority=7, timeout=60
        )
        assert [h.result(timeout=30) for h in handles] == [0, 2, 4, 6, 8]
        delayed = client.enqueue_many("client-many", "double", [(9,)], delay=3600)
        assert delayed[0].status() is durably.Status.DELAYED
        with pytest.raises(durably.InvalidArgument):
            client.enqueue_many("client-many", "double", [[1]])  # type: ignore[list-item]
    assert count(db, "priority = 7 AND timeout_seconds = 60") == 5


def test_enqueue_many_inside_a_workflow_makes_numbered_children(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    queue = app.queue("children")

    @app.workflow(name="child")
    def child(n: int) -> int:
        return n * 10

    @app.workflow(name="parent")
    def parent() -> list[int]:
        handles = queue.enqueue_many(child, [(1,), (2,), (3,)])
        return [h.result() for h in handles]

    assert parent.options(id="p")() == [10, 20, 30]
    rows = db.execute(
        "SELECT id, parent_id FROM workflows WHERE name = 'child' ORDER BY id"
    ).fetchall()
    assert [tuple(r) for r in rows] == [("p-1", "p"), ("p-2", "p"), ("p-3", "p")]


def test_concurrent_enqueues_folded_into_one_statement_each_get_their_own_answer(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Enqueues that meet in one group-commit batch go in as one statement: duplicate
    IDs attach, a held dedup key is refused or attached as asked, the rest run once."""
    ran: list[int] = []

    def build(app: durably.App) -> durably.Workflow[..., Any]:
        @app.workflow(name="count_run")
        async def count_run(n: int) -> int:
            ran.append(n)
            return n

        return count_run

    # Nothing runs until every enqueue has its answer (so the dedup key stays held).
    enqueuer = make_app()
    queue = enqueuer.queue("folded")
    count_run = build(enqueuer)
    enqueuer.launch(queues=[])

    async def burst() -> list[Any]:
        calls: list[Any] = []
        for n in range(200):
            wf = count_run
            if n % 50 == 0:
                wf = count_run.options(id="same")  # four enqueues of one ID
            elif n in (7, 8):
                wf = count_run.options(queue="folded", dedup_key="key")
            elif n == 9:
                wf = count_run.options(queue="folded", dedup_key="key", if_duplicate="existing")
            calls.append(queue.enqueue_async(wf, n))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(burst())
    worker = make_app()
    worker.queue("folded")
    build(worker)
    worker.launch()
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], durably.DuplicateWorkflow)
    handles = [r for r in results if not isinstance(r, BaseException)]
    # "same" four times is one run; 7 or 8 is refused; 9 attaches to the other.
    assert len({h.id for h in handles}) == 200 - 3 - 2
    for handle in handles:
        handle.result(timeout=60)
    assert len(ran) == len(set(ran)) == 200 - 3 - 2
    assert count(db, "queue_name = 'folded'") == 195


def test_due_queues_without_shared_limits_are_claimed_in_one_statement(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """A worker serving several queues claims those with no limit counted across workers
    together, each within its own want and worker_concurrency; a queue with a shared
    limit still takes its lock and claims alone."""
    runs: dict[str, list[tuple[float, float]]] = {}
    guard = threading.Lock()

    def build(app: durably.App) -> durably.Workflow[..., Any]:
        @app.workflow(name="work")
        def work(queue: str, n: int) -> int:
            start = time.monotonic()
            time.sleep(0.01)
            with guard:
                runs.setdefault(queue, []).append((start, time.monotonic()))
            return n

        return work

    queues: dict[str, dict[str, int]] = {
        "q1": {}, "q2": {}, "q3": {"worker_concurrency": 2}, "q4": {},
        "limited": {"concurrency": 3},
    }  # fmt: skip
    enqueuer = make_app()
    work = build(enqueuer)
    declared = {name: enqueuer.queue(name, **limits) for name, limits in queues.items()}
    enqueuer.launch(queues=[])
    handles = []
    for name, queue in declared.items():
        handles += queue.enqueue_many(work, [(name, i) for i in range(15)])

    calls: list[int] = []
    original = queue_statements.QueueStatements.claim_queued_many

    def counted(self: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["wants"]))
        return original(self, **kwargs)

    queue_statements.QueueStatements.claim_queued_many = counted  # type: ignore[method-assign]
    try:
        worker = make_app()
        build(worker)
        for name, limits in queues.items():
            worker.queue(name, **limits)
        worker.launch()
        for handle in handles:
            handle.result(timeout=60)
    finally:
        queue_statements.QueueStatements.claim_queued_many = original  # type: ignore[method-assign]
    assert calls and calls[0] == 4  # q1..q4 in the first claim; "limited" alone
    assert {name: len(r) for name, r in runs.items()} == {name: 15 for name in queues}
    assert max_overlap(runs["q3"]) <= 2
    assert max_overlap(runs["limited"]) <= 3
    assert count(db, "status = 'SUCCESS'") == 75
