"""Queues across real worker processes (``durably worker``): limits that hold across
workers, checked from the database, and queued work that survives SIGKILL of its worker."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg

import durably
from queueprocs.jobs import effect_lines
from queueprocs.util import Fleet, Sampler, all_status, max_overlap, statuses
from support import wait_until

RUNNING_BY_EXECUTOR = """
    SELECT executor_id, count(*) FROM workflows
    WHERE queue_name = %s AND status = 'PENDING' GROUP BY executor_id
"""


def running(db: psycopg.Connection[Any], queue: str) -> dict[str, int]:
    return dict(db.execute(RUNNING_BY_EXECUTOR, (queue,)).fetchall())


def pending_ids(db: psycopg.Connection[Any], queue: str) -> list[str]:
    rows = db.execute(
        "SELECT id FROM workflows WHERE queue_name = %s AND status = 'PENDING' ORDER BY started_at",
        (queue,),
    )
    return [r[0] for r in rows]


def test_global_and_worker_concurrency_across_two_workers(
    fleet: Fleet, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Queue "fleet": concurrency=3, worker_concurrency=2, two worker processes."""
    fleet.start("--queue", "fleet", executor_id="fleet-a")
    fleet.start("--queue", "fleet", executor_id="fleet-b")
    jobs = fleet.enqueuer(make_app)
    keys = [f"f{i}" for i in range(8)]

    with Sampler(fleet.url, fleet.schema, RUNNING_BY_EXECUTOR, ("fleet",)) as sampler:
        handles = [jobs.gated.options(queue="fleet", id=k).start(k) for k in keys]
        # Saturated: 3 running, which takes both workers (each may run only 2).
        wait_until(lambda: sum(running(db, "fleet").values()) == 3, what="3 running")
        assert set(running(db, "fleet")) == {"fleet-a", "fleet-b"}
        wait_until(lambda: sum(n for _, n in sampler.samples[-1]) == 3, what="the sampler to see 3")
        # Release one running workflow at a time; the freed slot is refilled each time
        # (by whichever worker may take it) while work remains.
        finished: set[str] = set()
        while len(finished) < len(keys):
            now_running = pending_ids(db, "fleet")
            assert now_running, statuses(db, keys)
            victim = now_running[0]
            fleet.open(victim)
            wait_until(lambda v=victim: statuses(db, [v])[v] == "SUCCESS", what=victim)
            finished.add(victim)
            target = min(3, len(keys) - len(finished))
            wait_until(
                lambda n=target: sum(running(db, "fleet").values()) == n,
                what=f"{target} running after {victim} finished",
            )
        results = [h.result(timeout=10) for h in handles]

    totals = [sum(n for _, n in sample) for sample in sampler.samples]
    per_worker = [n for sample in sampler.samples for _, n in sample]
    assert len(sampler.samples) > 10  # the sampler really watched the run
    assert max(totals) == 3, f"global concurrency 3 exceeded: max {max(totals)} running"
    assert max(per_worker) == 2, f"worker concurrency 2 exceeded: max {max(per_worker)}"
    # The same from the bodies' own start and end times.
    assert max_overlap((r["start"], r["end"]) for r in results) <= 3
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for r in results:
        by_pid.setdefault(r["pid"], []).append((r["start"], r["end"]))
    assert len(by_pid) == 2
    assert all(max_overlap(spans) <= 2 for spans in by_pid.values())
    # Each body ran exactly once.
    ends = Counter(k for what, k, _ in effect_lines(fleet.effects) if what == "end")
    assert ends == dict.fromkeys(keys, 1)


def test_queued_work_survives_sigkill_of_its_worker(
    fleet: Fleet, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """A worker (lease 1 s) claims a job from a concurrency-1 queue and is SIGKILLed while
    the job waits at its gate; a second worker takes it over and completes it, and the
    slot is then free again: the next item runs."""
    first = fleet.start("--queue", "crash", executor_id="crash-1", lease=1.0)
    jobs = fleet.enqueuer(make_app)
    fleet.open("c2")  # the second item finishes as soon as it runs
    with Sampler(
        fleet.url,
        fleet.schema,
        "SELECT count(*) FROM workflows WHERE queue_name = 'crash' AND status = 'PENDING'",
    ) as sampler:
        c1 = jobs.gated.options(queue="crash", id="c1").start("c1")
        c2 = jobs.gated.options(queue="crash", id="c2").start("c2")
        wait_until(
            lambda: ("start", "c1", first.pid) in effect_lines(fleet.effects),
            what="c1 running in the first worker",
        )
        row = db.execute("SELECT status, executor_id FROM workflows WHERE id = 'c1'").fetchone()
        assert row == ("PENDING", "crash-1")
        assert statuses(db, ["c2"]) == {"c2": "ENQUEUED"}  # the one slot is taken

        first.proc.send_signal(signal.SIGKILL)
        assert first.wait_exit() == -signal.SIGKILL
        second = fleet.start("--queue", "crash", executor_id="crash-2", lease=1.0)
        wait_until(
            lambda: ("start", "c1", second.pid) in effect_lines(fleet.effects),
            what="c1 taken over by the second worker",
        )
        row = db.execute("SELECT status, executor_id FROM workflows WHERE id = 'c1'").fetchone()
        assert row == ("PENDING", "crash-2")
        # The taken-over workflow still holds the queue's only slot.
        assert statuses(db, ["c2"]) == {"c2": "ENQUEUED"}

        fleet.open("c1")
        assert c1.result(timeout=20)["pid"] == second.pid
        assert c2.result(timeout=20)["pid"] == second.pid
    assert max(n for [(n,)] in sampler.samples) == 1
    lines = effect_lines(fleet.effects)
    assert [(w, p) for w, k, p in lines if k == "c1"] == [
        ("start", first.pid),
        ("start", second.pid),
        ("end", second.pid),
    ]
    assert [(w, p) for w, k, p in lines if k == "c2"] == [
        ("start", second.pid),
        ("end", second.pid),
    ]
    order = db.execute(
        "SELECT id FROM workflows WHERE queue_name = 'crash' ORDER BY completed_at"
    ).fetchall()
    assert [r[0] for r in order] == ["c1", "c2"]


def test_takeover_keeps_worker_concurrency(
    fleet: Fleet, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Queue "percap": worker_concurrency=2. Two workers run two items each; one is
    SIGKILLed. Its items must not make the survivor run four at once: the per-worker
    limit holds whatever the number of machines (DESIGN §4), including after a takeover."""
    a = fleet.start("--queue", "percap", executor_id="percap-a", lease=1.0)
    fleet.start("--queue", "percap", executor_id="percap-b", lease=1.0)
    jobs = fleet.enqueuer(make_app)
    keys = [f"p{i}" for i in range(4)]
    for k in keys:
        jobs.gated.options(queue="percap", id=k).start(k)
    wait_until(
        lambda: running(db, "percap") == {"percap-a": 2, "percap-b": 2}, what="2 + 2 running"
    )
    a.proc.send_signal(signal.SIGKILL)
    assert a.wait_exit() == -signal.SIGKILL

    def a_items_released() -> bool:
        owners = db.execute(
            "SELECT executor_id FROM workflows WHERE queue_name = 'percap' AND status = 'PENDING'"
        ).fetchall()
        return all(o != "percap-a" for (o,) in owners)

    with Sampler(fleet.url, fleet.schema, RUNNING_BY_EXECUTOR, ("percap",)) as sampler:
        wait_until(a_items_released, what="the dead worker's items to leave it")
        # Whatever happens to them (re-enqueued or taken over), b may run only 2 at once.
        snapshot = running(db, "percap")
    assert snapshot.get("percap-b", 0) <= 2, (
        f"after the takeover worker b runs {snapshot.get('percap-b')} workflows of queue "
        f"'percap' (worker_concurrency=2) at once: {snapshot}"
    )
    assert max(n for sample in sampler.samples for _, n in sample) <= 2
    fleet.open(*keys)
    wait_until(lambda: all_status(db, keys, "SUCCESS"), what="all items to finish")
    ends = Counter(k for what, k, _ in effect_lines(fleet.effects) if what == "end")
    assert ends == dict.fromkeys(keys, 1)
