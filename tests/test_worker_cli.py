"""``durably worker MODULE:APP``: runs queued work, drains on SIGTERM, rejects bad targets."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from queueprocs.jobs import effect_lines
from queueprocs.util import ROOT, Fleet, statuses
from support import wait_until


def executor_rows(db: psycopg.Connection[Any], executor_id: str) -> int:
    row = db.execute("SELECT count(*) FROM executors WHERE id = %s", (executor_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_worker_runs_queued_work_and_finishes_in_flight_work_on_sigterm(
    fleet: Fleet, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    worker = fleet.start("--queue", "cli", "--grace", "30", executor_id="cli-1")
    jobs = fleet.enqueuer(make_app)

    fleet.open("quick")
    quick = jobs.queues["cli"].enqueue(jobs.gated, "quick")
    assert quick.result(timeout=20)["pid"] == worker.pid
    # It claims only from the queue it was given.
    other = jobs.gated.options(queue="cli-other", id="other").start("other")

    slow = jobs.gated.options(queue="cli", id="slow").start("slow")
    wait_until(
        lambda: ("start", "slow", worker.pid) in effect_lines(fleet.effects), what="slow running"
    )
    worker.signal(signal.SIGTERM)
    worker.wait_for("SIGTERM, stopping")
    # Still waiting for its in-flight workflow (it has 30 s of grace).
    assert worker.proc.poll() is None
    assert statuses(db, ["slow"]) == {"slow": "PENDING"}

    fleet.open("slow")
    assert worker.wait_exit() == 0, worker.output()
    assert "durably worker: stopped" in worker.output()
    assert statuses(db, ["slow", "other"]) == {"slow": "SUCCESS", "other": "ENQUEUED"}
    assert slow.result(timeout=5)["pid"] == worker.pid
    assert executor_rows(db, "cli-1") == 0  # nothing left unfinished: its row is gone
    assert other.status() is durably.Status.ENQUEUED


def test_worker_hands_unfinished_work_back_after_grace(
    fleet: Fleet, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """In-flight work that outlives --grace is left PENDING and released: the worker's
    lease ends in the database, so a live worker takes it over at its next heartbeat (the
    leases are so long that nothing else explains the takeover)."""
    first = fleet.start("--queue", "cli", "--grace", "0.2", executor_id="cli-a", lease=600.0)
    jobs = fleet.enqueuer(make_app)
    stuck = jobs.gated.options(queue="cli", id="stuck").start("stuck")
    wait_until(
        lambda: ("start", "stuck", first.pid) in effect_lines(fleet.effects), what="stuck running"
    )
    second = fleet.start("--queue", "cli", executor_id="cli-b", lease=600.0)
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0, first.output()
    assert "stuck (queueprocs.gated)" in first.output()
    assert "released" in first.output()
    # Its row stays, with its lease ended, while it owns unfinished work.
    row = db.execute(
        "SELECT heartbeat_at + make_interval(secs => lease_seconds) < now() FROM executors "
        "WHERE id = 'cli-a'"
    ).fetchone()
    assert row == (True,)

    wait_until(
        lambda: ("start", "stuck", second.pid) in effect_lines(fleet.effects),
        what="stuck taken over",
    )
    fleet.open("stuck")
    assert stuck.result(timeout=20)["pid"] == second.pid
    ends = [p for what, k, p in effect_lines(fleet.effects) if what == "end" and k == "stuck"]
    assert ends == [second.pid]


def test_a_second_signal_ends_the_grace_and_releases_at_once(
    fleet: Fleet, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    worker = fleet.start("--queue", "cli", "--grace", "600", executor_id="cli-h", lease=600.0)
    jobs = fleet.enqueuer(make_app)
    jobs.gated.options(queue="cli", id="hurried").start("hurried")
    wait_until(
        lambda: ("start", "hurried", worker.pid) in effect_lines(fleet.effects),
        what="hurried running",
    )
    worker.signal(signal.SIGTERM)
    worker.wait_for("SIGTERM, stopping")
    worker.signal(signal.SIGINT)
    assert worker.wait_exit() == 0, worker.output()  # well within its 600 s of grace
    assert "SIGINT again, releasing running workflows" in worker.output()
    assert "hurried (queueprocs.gated)" in worker.output()
    row = db.execute(
        "SELECT heartbeat_at + make_interval(secs => lease_seconds) < now() FROM executors "
        "WHERE id = 'cli-h'"
    ).fetchone()
    assert row == (True,)
    assert statuses(db, ["hurried"]) == {"hurried": "PENDING"}  # for a live worker to take


def run_cli(fleet: Fleet, *args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    command = (
        [str(Path(sys.executable).parent / "durably")]
        if script
        else [sys.executable, "-m", "durably.cli"]
    )
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=fleet.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_log_level_sets_what_it_logs(
    fleet: Fleet, make_app: Callable[..., durably.App]
) -> None:
    worker = fleet.start("--queue", "cli", "--log-level", "debug", executor_id="cli-log")
    jobs = fleet.enqueuer(make_app)
    fleet.open("logged")
    jobs.queues["cli"].enqueue(jobs.gated.options(id="logged"), "logged").result(timeout=20)
    started = worker.wait_for("workflow logged (queueprocs.gated) started")
    assert " INFO durably.workflows: " in started  # time, level, logger, message
    worker.wait_for("workflow logged (queueprocs.gated) finished")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0, worker.output()

    quiet = fleet.start("--queue", "cli", "--log-level", "WARNING", executor_id="cli-quiet")
    fleet.open("unlogged")
    jobs.queues["cli"].enqueue(jobs.gated.options(id="unlogged"), "unlogged").result(timeout=20)
    quiet.signal(signal.SIGTERM)
    assert quiet.wait_exit() == 0, quiet.output()
    assert "workflow unlogged" not in quiet.output()


def test_executor_id_option_names_the_worker_and_refuses_a_live_duplicate(
    fleet: Fleet, db: Any
) -> None:
    """``--executor-id`` names the worker's executor (its heartbeat row says so); a second
    worker given the same ID while the first is live fails with ExecutorIdInUse."""
    first = fleet.start("--queue", "cli", "--executor-id", "pod-7")
    assert "executor pod-7 ready" in first.output()
    rows = db.execute("SELECT id FROM executors WHERE id = 'pod-7'").fetchall()
    assert rows == [("pod-7",)]
    second = fleet.start("--queue", "cli", "--executor-id", "pod-7", ready=False)
    assert second.wait_exit() == 2
    assert "durably worker: executor ID 'pod-7' is held by another live process" in (
        second.output()
    )
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0, first.output()


def test_a_bad_log_level_is_one_clear_line(fleet: Fleet) -> None:
    done = run_cli(fleet, "worker", "queueprocs.worker_app:app", "--log-level", "LOUD")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == (
        "durably worker: --log-level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL "
        "(got 'LOUD') [docs/errors.md#configurationerror]\n"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("queueprocs.no_such_module:app", "cannot import 'queueprocs.no_such_module'"),
        ("no_such_package.workers:app", "cannot import 'no_such_package.workers'"),
        ("queueprocs.worker_app:missing", "is not a durably.App (found NoneType)"),
        ("queueprocs.worker_app:not_an_app", "is not a durably.App (found str)"),
        (":app", "expected MODULE:APP"),
    ],
)
def test_bad_target_exits_2_with_a_clear_message(fleet: Fleet, target: str, message: str) -> None:
    done = run_cli(fleet, "worker", target)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert done.stderr.startswith("durably worker: ")
    assert "Traceback" not in done.stderr


def test_console_script_bad_target_and_undeclared_queue(fleet: Fleet) -> None:
    if not (Path(sys.executable).parent / "durably").exists():
        pytest.skip("no durably console script next to this interpreter")
    done = run_cli(fleet, "worker", "queueprocs.nope:app", script=True)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "cannot import 'queueprocs.nope'" in done.stderr
    done = run_cli(fleet, "worker", "queueprocs.worker_app:app", "--queue", "ghost")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "undeclared queue(s) ['ghost']" in done.stderr
    done = run_cli(fleet, "worker")  # no MODULE:APP at all: a usage error
    assert done.returncode == 2
    assert "MODULE:APP" in done.stderr
