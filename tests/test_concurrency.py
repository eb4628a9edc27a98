"""Concurrent starts: one workflow ID runs its body once, whoever races to start it."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from procs.harness import Workers
from procs.workflows import Deployment, build, expected_three

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def local(pg_url: str, schema: str, workers: Workers) -> Iterator[Deployment]:
    """The test workflows in this process, launched, writing to the workers' effects file."""
    deployment = build(
        pg_url, schema, executor_id=f"local-{os.getpid()}", lease=5.0, effects=workers.effects
    )
    try:
        deployment.app.launch()
        yield deployment
    finally:
        deployment.app.shutdown(grace=5)


def count(db: psycopg.Connection[Any], sql: str) -> int:
    row = db.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_same_id_from_eight_threads_runs_once(
    local: Deployment, workers: Workers, db: psycopg.Connection[Any]
) -> None:
    once = local.workflows["once"]
    barrier = threading.Barrier(8)

    def call(_: int) -> str:
        barrier.wait(timeout=20)
        return once.options(id="wf-same")(21)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    assert results == [f"42@{os.getpid()}"] * 8
    counts = workers.counts()
    assert counts["once-body"] == 1
    assert counts["s1"] == 1
    assert count(db, "SELECT count(*) FROM workflows") == 1
    assert count(db, "SELECT count(*) FROM operations") == 1


def test_same_id_from_three_processes_runs_once(
    workers: Workers, db: psycopg.Connection[Any]
) -> None:
    procs = [workers.spawn(f"racer-{i}", lease=5.0) for i in range(3)]
    for proc in procs:  # every one is launched: send the three starts back to back
        proc.send(op="run", wf="once", id="wf-race", args=[8])
    results = [proc.expect("result", id="wf-race")["value"] for proc in procs]
    assert len(set(results)) == 1
    value, _, pid = results[0].partition("@")
    assert value == "16"
    assert int(pid) in {proc.pid for proc in procs}
    lines = workers.lines()
    assert [label for label, _ in lines] == ["once-body", "s1"]
    assert {p for _, p in lines} == {int(pid)}  # body and step ran in the winner only
    assert count(db, "SELECT count(*) FROM workflows") == 1
    assert count(db, "SELECT count(*) FROM operations") == 1


def test_distinct_workflows_from_sixteen_threads(
    local: Deployment, workers: Workers, db: psycopg.Connection[Any]
) -> None:
    three = local.workflows["three"]
    barrier = threading.Barrier(16)

    def call(i: int) -> list[int]:
        barrier.wait(timeout=20)
        return three.options(id=f"wf-{i}")(i)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert results == [expected_three(i) for i in range(16)]
    assert workers.counts() == collections.Counter({"s1": 16, "s2": 16, "s3": 16})
    assert count(db, "SELECT count(*) FROM operations") == 48
    assert count(db, "SELECT count(*) FROM workflows WHERE status = 'SUCCESS'") == 16
    outputs = dict(db.execute("SELECT id, output FROM workflows").fetchall())
    assert outputs == {f"wf-{i}": expected_three(i) for i in range(16)}
    # Nothing crashed: no workflow was recovered (claimed again, its epoch bumped).
    assert count(db, "SELECT count(*) FROM workflows WHERE recovery_attempts > 0") == 0


def test_workflows_started_while_the_app_launches_run_once(
    pg_url: str, schema: str, workers: Workers, db: psycopg.Connection[Any]
) -> None:
    # One thread launches a fresh app (launch recovers this executor's unfinished
    # workflows, left by an earlier process). As soon as the launch has registered the
    # executor, other threads start workflows. Those are not "unfinished workflows of an
    # earlier process": each must run once and never be recovered.
    rounds, threads = 8, 16
    for r in range(rounds):
        deployment = build(
            pg_url, schema, executor_id=f"launching-{r}", lease=5.0, effects=workers.effects
        )
        three = deployment.workflows["three"]
        assert deployment.app.engine is not None  # connected (schema created), not launched
        go = threading.Event()

        def call(i: int, three: Any = three, go: threading.Event = go, r: int = r) -> Any:
            assert go.wait(timeout=20)
            return three.options(id=f"r{r}-{i}")(i)

        try:
            with ThreadPoolExecutor(threads + 1) as pool:
                launched = pool.submit(deployment.app.launch)
                calls = [pool.submit(call, i) for i in range(threads)]
                deadline = time.monotonic() + 20
                while not db.execute(
                    "SELECT 1 FROM executors WHERE id = %s", (f"launching-{r}",)
                ).fetchone():
                    assert time.monotonic() < deadline, "the launch never registered"
                go.set()
                launched.result(timeout=20)
                results = [c.result(timeout=30) for c in calls]
        finally:
            go.set()
            deployment.app.shutdown(grace=5)
        assert results == [expected_three(i) for i in range(threads)]
    recovered = db.execute(
        "SELECT id, epoch, recovery_attempts FROM workflows WHERE recovery_attempts > 0 ORDER BY id"
    ).fetchall()
    assert recovered == [], "workflows of a live process were recovered as its orphans"
    total = rounds * threads
    assert workers.counts() == collections.Counter({"s1": total, "s2": total, "s3": total})


def test_two_hundred_async_workflows_gathered(make_app: Any, db: psycopg.Connection[Any]) -> None:
    app = make_app()
    ran: collections.Counter[tuple[int, int]] = collections.Counter()

    @app.step(name="add")
    async def add(i: int, k: int) -> int:
        ran[(i, k)] += 1
        await asyncio.sleep(0)  # let the other workflows interleave
        return i * 10 + k

    @app.workflow(name="five")
    async def five(i: int) -> list[int]:
        return [await add(i, k) for k in range(5)]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(five.options(id=f"a-{i}")(i) for i in range(200)))

    app.launch()
    results = asyncio.run(main())
    assert results == [[i * 10 + k for k in range(5)] for i in range(200)]
    assert ran == collections.Counter({(i, k): 1 for i in range(200) for k in range(5)})
    assert count(db, "SELECT count(*) FROM operations") == 1000
    assert count(db, "SELECT count(*) FROM workflows WHERE status = 'SUCCESS'") == 200
    assert count(db, "SELECT count(*) FROM workflows WHERE recovery_attempts > 0") == 0
    rows = db.execute("SELECT workflow_id, step, name, output FROM operations").fetchall()
    assert set(rows) == {(f"a-{i}", k + 1, "add", i * 10 + k) for i in range(200) for k in range(5)}
    assert len(rows) == 1000


def test_many_async_workflows_commit_in_two_halves(
    make_app: Any, db: psycopg.Connection[Any]
) -> None:
    """Gathered together, 300 async workflows' writes go out in two alternating halves,
    not one batch of all but the first (then one side always waits for the other); every
    write still lands exactly once."""
    from durably.telemetry import Observer

    sizes: list[int] = []

    class Batches(Observer):
        def commit_batch(self, size: int) -> None:
            sizes.append(size)

    app = make_app(telemetry=Batches())

    @app.step(name="double")
    async def double(i: int, k: int) -> int:
        return 2 * i + k

    @app.workflow(name="steps")
    async def steps(i: int) -> list[int]:
        return [await double(i, k) for k in range(6)]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(steps.options(id=f"h-{i}")(i) for i in range(300)))

    app.launch()
    assert asyncio.run(main()) == [[2 * i + k for k in range(6)] for i in range(300)]
    assert count(db, "SELECT count(*) FROM operations") == 1800
    assert count(db, "SELECT count(*) FROM workflows WHERE status = 'SUCCESS'") == 300
    assert max(sizes) <= 151, sizes  # half of 300, and the one of the first batch
    assert sum(1 for size in sizes if size >= 100) >= 10, sizes  # still batched
