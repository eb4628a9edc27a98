"""A process that exits mid-workflow names what it leaves and releases it to a live worker."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg
import pytest

from queueprocs.jobs import effect_lines
from queueprocs.util import ROOT, TESTS, Fleet, statuses
from support import wait_until

pytestmark = pytest.mark.timeout(120)

# So long that only a release explains a takeover within a test's deadlines: an expired
# lease is never the reason, and a worker's slow sweep comes only after four of these.
LONG_LEASE = 600.0


def test_a_script_that_exits_mid_workflow_hands_it_to_a_live_worker(
    fleet: Fleet, db: psycopg.Connection[Any]
) -> None:
    worker = fleet.start(executor_id="live", lease=LONG_LEASE)
    script = subprocess.run(
        [sys.executable, str(TESTS / "queueprocs" / "exiting_script.py"), "left"],
        cwd=ROOT,
        env=fleet.env(executor_id="script", lease=LONG_LEASE),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert script.returncode == 0, (script.stdout, script.stderr)
    assert "started left" in script.stdout
    # The script says, without any logging set up, what it left and that it was released.
    warning = [line for line in script.stderr.splitlines() if "left (queueprocs.gated)" in line]
    assert len(warning) == 1, script.stderr
    assert "executor script shut down with 1 workflow(s) unfinished" in warning[0]
    assert "released" in warning[0]
    assert "Traceback" not in script.stderr, script.stderr
    # Its executor's lease ended when it exited (the row stays: it owned unfinished work).
    expired = db.execute(
        "SELECT heartbeat_at + make_interval(secs => lease_seconds) < now() FROM executors "
        "WHERE id = 'script'"
    ).fetchall()
    assert expired == [(True,)], expired

    # The live worker takes it over at its next heartbeat, 600 s before the lease ends.
    wait_until(
        lambda: ("start", "left", worker.pid) in effect_lines(fleet.effects),
        what="the live worker running the step",
    )
    fleet.open("left")
    wait_until(lambda: statuses(db, ["left"]) == {"left": "SUCCESS"}, what="left finished")
    ran = effect_lines(fleet.effects)
    starts = [pid for what, key, pid in ran if what == "start" and key == "left"]
    ends = [pid for what, key, pid in ran if what == "end" and key == "left"]
    assert len(starts) == 2 and starts[1] == worker.pid, ran  # the script's, then the worker's
    assert ends == [worker.pid], ran  # the step finished once, in the worker
    row = db.execute("SELECT executor_id, epoch FROM workflows WHERE id = 'left'").fetchone()
    assert row == ("live", 2), row
    steps = db.execute("SELECT count(*) FROM operations WHERE workflow_id = 'left'").fetchone()
    assert steps == (1,)
