"""Failover to a standby: workers on a multi-host URL ride out the loss of the primary.

Two real PostgreSQL servers on this machine (``chaos.replica.Pair``): a primary and a
streaming standby made with ``pg_basebackup -R``. Three worker processes connect with
one URL naming both (``target_session_attrs=read-write``) and run workflows of four
steps from a queue; each step body appends a line to a ledger file, which survives what
the database loses. Mid-run the primary is crashed (``pg_ctl stop -m immediate``) and
the standby promoted (``pg_ctl promote``); the workers carry on against it.

- Synchronous standby: nothing acknowledged is lost (everything a committed transaction
  saw just before the crash is there after it), every workflow finishes once with its
  result, and no step body whose checkpoint was acknowledged runs again.
- Asynchronous standby: the standby is cut off first, so the primary's last commits
  exist only there and die with it (a standby that lags, made certain). Those commits
  are lost: finished workflows become unfinished again, checkpoints and claims vanish.
  Each worker sees the new WAL timeline and takes back every workflow it owns, which
  replays from what survived, running the lost steps again; every workflow still
  finishes with its result, and every step of it is recorded: a run that claimed its
  workflow before the failover cannot write on the new timeline (its checkpoints are
  fenced by the timeline's lowest epoch), so none carries on from memory past a lost
  checkpoint.
- A primary turned read-only under open connections (a switchover's first move): its
  read_only_sql_transaction errors count as an outage, and everything, the LISTEN
  connection included, moves to the promoted standby.

Each test prints how long the workers took to write again after the promotion.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import durably
from support import wait_until

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python -m pytest`` has it already; plain ``pytest`` not
    sys.path.insert(0, str(ROOT))

from chaos.replica import Pair  # noqa: E402

from failoverprocs.worker import STEPS, expected  # noqa: E402

pytestmark = pytest.mark.timeout(120)

WORKER = Path(__file__).resolve().parent / "failoverprocs" / "worker.py"
SCHEMA = "fo"
WORKFLOWS = 60
WORKERS = 3
FINISH = 60.0  # the deadline for every workflow to finish after the promotion


@dataclass
class Run:
    """One test's servers, workers and ledger."""

    pair: Pair
    ledger: Path
    workers: list[subprocess.Popen[str]]

    def sql(self, query: str, url: str | None = None) -> list[tuple[Any, ...]]:
        """``query`` on the schema, by the multi-host URL unless told a server's own."""
        with psycopg.connect(url or self.pair.url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(SCHEMA)))
            return conn.execute(query).fetchall()  # type: ignore[arg-type]

    def bodies(self) -> list[tuple[str, int, int, float]]:
        """(workflow, step, pid, start time) of every step body that ran, from the ledger."""
        lines = self.ledger.read_text().splitlines() if self.ledger.exists() else []
        return [(w, int(s), int(p), float(t)) for w, s, p, t in (ln.split() for ln in lines)]


@pytest.fixture
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Run]:
    synchronous: bool = request.param
    root = Path(tempfile.mkdtemp(prefix="fo-", dir="/tmp"))  # short: socket paths
    ledger = tmp_path / "ledger"
    workers: list[subprocess.Popen[str]] = []
    try:
        with Pair(root / "pg", synchronous=synchronous) as pair:
            with durably.Client(pair.url, schema=SCHEMA) as client:
                for n in range(WORKFLOWS):
                    client.enqueue("fo", "chain", n, id=f"c-{n}")
            for slot in range(WORKERS):
                log = open(tmp_path / f"worker-{slot}.log", "ab")  # noqa: SIM115 - the worker's
                workers.append(
                    subprocess.Popen(
                        [sys.executable, str(WORKER), pair.url, SCHEMA, str(ledger)],
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
                log.close()
            for worker in workers:
                assert worker.stdout is not None
                assert worker.stdout.readline().strip() == "ready"
            yield Run(pair, ledger, workers)
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.close()
            for worker in workers:
                worker.wait(timeout=30)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        shutil.rmtree(root, ignore_errors=True)


def finished(run: Run) -> int:
    rows = run.sql("SELECT count(*) FROM workflows WHERE status NOT IN ('PENDING', 'ENQUEUED')")
    return int(rows[0][0])


def operations(run: Run, url: str) -> set[tuple[str, int]]:
    return {(w, int(s)) for w, s in run.sql("SELECT workflow_id, step FROM operations", url)}


def outcomes(run: Run, url: str) -> set[str]:
    return {w for (w,) in run.sql("SELECT id FROM workflows WHERE status = 'SUCCESS'", url)}


def finish_and_check(run: Run, promoted_at: float) -> float:
    """Wait until every workflow is final; check each result and the step records, and
    that no body started after its step's checkpoint committed. Returns the time from
    the promotion to the first checkpoint on the new primary."""
    try:
        wait_until(lambda: finished(run) == WORKFLOWS, FINISH, "every workflow final")
    except AssertionError as exc:
        left = run.sql(
            "SELECT id, status, executor_id, epoch, queue_name, wait_kind FROM workflows "
            "WHERE status IN ('PENDING', 'ENQUEUED') ORDER BY id"
        )
        raise AssertionError(f"{exc}; left: {left}") from None
    rows = run.sql("SELECT id, status, output FROM workflows ORDER BY id")
    assert len(rows) == WORKFLOWS
    for workflow_id, status, output in rows:
        n = int(workflow_id.removeprefix("c-"))
        assert (status, output) == ("SUCCESS", expected(n)), workflow_id
    steps = run.sql(
        "SELECT workflow_id, step, kind, extract(epoch FROM completed_at)::float8, output "
        "FROM operations"
    )
    recorded = {(w, s): (kind, done, out) for w, s, kind, done, out in steps}
    bodies = run.bodies()
    for workflow_id, step, _pid, started in bodies:
        kind, done, out = recorded[(workflow_id, step)]
        assert kind == "step"
        n = int(workflow_id.removeprefix("c-"))
        assert out == n * 10 + step
        # A body never starts once its checkpoint is committed (the ledger's clock and
        # the server's are this machine's).
        assert started < done, f"step {step} of {workflow_id} ran after its checkpoint"
    # Every step is recorded (none left out by a run that went on past a lost
    # checkpoint), and every recorded step ran here.
    assert set(recorded) == {(w, s) for w, s, _p, _t in bodies}
    after = [done for _k, done, _o in recorded.values() if done > promoted_at]
    return min(after) - promoted_at


@pytest.mark.parametrize("run", [True], indirect=True, ids=["synchronous"])
def test_synchronous_standby_loses_nothing_and_reruns_nothing_committed(run: Run) -> None:
    wait_until(lambda: finished(run) >= WORKFLOWS // 5, what="a fifth of the workflows done")
    primary = run.pair.primary.url_for("chaos")
    # What one transaction sees just before the crash, acknowledged by its own commit:
    # a synchronous commit returns once the standby has flushed it, and with it all the
    # WAL before it, so everything this snapshot saw is on the standby.
    with psycopg.connect(primary) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(SCHEMA)))
        steps = conn.execute("SELECT workflow_id, step FROM operations")
        seen_steps = {(w, s) for w, s in steps}
        done = conn.execute("SELECT id FROM workflows WHERE status = 'SUCCESS'")
        seen_done = {w for (w,) in done}
        conn.execute("CREATE TABLE public.marker (at float8)")
    assert 0 < len(seen_done) < WORKFLOWS
    crashed_at = time.time()
    run.pair.fail_over()
    promoted_at = time.time()
    assert run.sql("SELECT count(*) FROM public.marker") == [(0,)]
    resumed = finish_and_check(run, promoted_at)
    print(
        f"\nsynchronous failover: crash to promoted {promoted_at - crashed_at:.3f} s, first "
        f"checkpoint {resumed:.3f} s after the promotion"
    )

    new_primary = run.pair.primary.url_for("chaos")
    assert seen_steps <= operations(run, new_primary)
    assert seen_done <= outcomes(run, new_primary)
    # Every step recorded: no checkpoint was lost.
    assert len(operations(run, new_primary)) == WORKFLOWS * STEPS
    runs = collections.Counter((w, s) for w, s, _p, _t in run.bodies())
    # A body whose checkpoint the snapshot saw never ran again; bodies are at-least-once
    # only where a checkpoint was in flight at the crash (none acknowledged, none lost).
    assert all(runs[key] == 1 for key in seen_steps)
    assert set(runs) == {(f"c-{n}", s) for n in range(WORKFLOWS) for s in range(1, STEPS + 1)}


@pytest.mark.parametrize("run", [False], indirect=True, ids=["asynchronous"])
def test_asynchronous_standby_loses_the_last_commits_and_durably_runs_them_again(
    run: Run,
) -> None:
    pair = run.pair
    wait_until(lambda: finished(run) >= WORKFLOWS // 5, what="a fifth of the workflows done")
    pair.caught_up()
    pair.cut_replication()
    primary, standby = pair.primary.url_for("chaos"), pair.standby.url_for("chaos")
    kept_steps = operations(run, standby)

    def lost() -> tuple[set[tuple[str, int]], set[str]] | None:
        steps = operations(run, primary) - kept_steps
        done = outcomes(run, primary) - outcomes(run, standby)
        return (steps, done) if len(steps) >= 8 and len(done) >= 2 else None

    lost_steps, lost_done = wait_until(lost, what="commits that only the primary has")
    crashed_at = time.time()
    pair.fail_over()
    promoted_at = time.time()
    # Gone: the outcomes and checkpoints the standby never received.
    assert not lost_done & outcomes(run, pair.primary.url_for("chaos"))
    resumed = finish_and_check(run, promoted_at)
    print(
        f"\nasynchronous failover: crash to promoted {promoted_at - crashed_at:.3f} s, first "
        f"checkpoint {resumed:.3f} s after the promotion"
    )

    runs = collections.Counter((w, s) for w, s, _p, _t in run.bodies())
    # Every step of every workflow ran.
    assert set(runs) == {(f"c-{n}", s) for n in range(WORKFLOWS) for s in range(1, STEPS + 1)}
    # A workflow whose outcome was lost was replayed to finish again: each of its steps
    # whose checkpoint was lost too ran again (the others were replayed from the record).
    for workflow_id, step in lost_steps:
        if workflow_id in lost_done:
            assert runs[(workflow_id, step)] >= 2, f"step {step} of {workflow_id}"
    again = sum(1 for key in lost_steps if runs[key] >= 2)
    print(
        f"asynchronous failover: {len(lost_steps)} checkpoints and {len(lost_done)} "
        f"outcomes lost; {again} lost steps ran again"
    )


def test_a_primary_turned_read_only_under_open_connections_is_an_outage_ridden_out(
    tmp_path: Path,
) -> None:
    """A switchover's first move makes the primary read-only while the app's pooled
    connections to it stay open: their writes fail with read_only_sql_transaction
    (25006). durably takes that as an outage and its fresh connections, by the
    multi-host URL, reach the promoted standby; so does its LISTEN connection."""
    with in_process(synchronous=False) as (pair, app, twice):
        with app:
            assert twice(1) == 4  # the pool holds connections to the primary now
            old = pair.primary.url_for("chaos")
            pair.switch_over()
            assert twice.options(id="after").start(5).result(timeout=FINISH) == 20
            # The LISTEN connection, quiet on the old primary, moves too.
            new = pair.primary.url_for("chaos")
            listening = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
            wait_until(lambda: run_sql(new, listening) == [(1,)], what="LISTEN on the new")
        new = pair.primary.url_for("chaos")
        assert run_sql(new, "SELECT status, output FROM workflows WHERE id = 'after'") == [
            ("SUCCESS", 20)
        ]
        assert run_sql(old, "SELECT count(*) FROM workflows WHERE id = 'after'") == [(0,)]


def test_a_start_on_the_new_primary_while_the_failover_is_noticed_runs_to_its_end() -> None:
    """A workflow started on the new primary after the worker read the new timeline, and
    whose run registered before the worker stopped the runs of the old one, goes on: its
    epoch is the new timeline's. (Chaos found it once left PENDING, owned by a live worker
    that never ran it: the runs were stopped by when they registered, and only rows
    written before the timeline was read were claimed anew.)"""
    with in_process(synchronous=True) as (pair, app, twice), app:
        assert twice(1) == 4
        engine = app.engine
        fence = engine.fence_below
        started: list[Any] = []

        def start_then_fence(floor: int) -> None:
            # Called by the keeper once it read the new timeline: a start made
            # now has its row on the new primary and registers before the fence.
            if floor > 0 and not started:
                with ThreadPoolExecutor(1) as pool:
                    handle = pool.submit(twice.options(id="between").start, 5)
                    started.append(handle.result(timeout=FINISH))
            fence(floor)

        engine.fence_below = start_then_fence  # type: ignore[method-assign]
        pair.fail_over()
        wait_until(lambda: bool(started), FINISH, "a start while the failover is seen")
        assert started[0].result(timeout=FINISH) == 20
        assert engine.epoch_floor == 1 << 32


@contextlib.contextmanager
def in_process(synchronous: bool) -> Iterator[tuple[Pair, durably.App, Any]]:
    """A primary and its standby, and an app in this process (not launched) with
    ``twice(x)``: a workflow of two steps that each double."""
    root = Path(tempfile.mkdtemp(prefix="fo-", dir="/tmp"))
    try:
        with Pair(root / "pg", synchronous=synchronous) as pair:
            app = durably.App(pair.url, schema=SCHEMA, lease=4.0)

            @app.step()
            def double(x: int) -> int:
                return 2 * x

            @app.workflow()
            def twice(x: int) -> int:
                return double(double(x))

            yield pair, app, twice
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_sql(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(SCHEMA)))
        return conn.execute(query).fetchall()  # type: ignore[arg-type]
