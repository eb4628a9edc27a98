"""The drain after the faults: everything back up, no new work, then wait (with a
deadline) until every workflow is final and every stream read ended."""

# SQL here names the suite's schemas, module constants (never input).
# ruff: noqa: S608

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from chaos.config import CHAOS_SCHEMA, CRON_NAME, WF_SCHEMA
from chaos.control import Switches
from chaos.fleet import Fleet
from chaos.inject import Injector
from chaos.load import Load
from chaos.pg import Cluster
from chaos.replica import Pair
from chaos.retry import Conn, GaveUp

log = logging.getLogger("chaos.drain")

_UNFINISHED = f"""
SELECT (SELECT count(*) FROM {WF_SCHEMA}.workflows
        WHERE status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER')),
       (SELECT count(*) FROM {CHAOS_SCHEMA}.expected e
        WHERE NOT EXISTS (SELECT 1 FROM {WF_SCHEMA}.workflows w WHERE w.id = e.workflow_id)),
       (SELECT coalesce(bool_and(paused), true) FROM {WF_SCHEMA}.schedules
        WHERE name = '{CRON_NAME}')
"""


def _acks_done(rundir: Path, fleet: Fleet) -> bool:
    return all((rundir / f"starts-done-{s.index}-{s.incarnation}").exists() for s in fleet.slots)


def drain(
    cluster: Cluster | Pair,
    fleet: Fleet,
    switches: Switches,
    injector: Injector,
    load: Load,
    conn: Conn,
    rundir: Path,
    deadline_s: float,
) -> dict[str, Any]:
    began = time.monotonic()
    deadline = began + deadline_s
    injector.close_window()
    switches.set(lost_reply=False)
    if not cluster.is_running():
        cluster.start()
    fleet.revive()
    load.stop(timeout=max(1.0, deadline - time.monotonic()))
    switches.set(starts=False, cron=False)
    state: dict[str, Any] = {"complete": False}
    resubmitted = False
    while time.monotonic() < deadline:
        fleet.revive()  # a worker that crashed during the drain is a finding, and restarted
        if not resubmitted and _acks_done(rundir, fleet):
            state["resubmitted"] = load.resubmit()
            resubmitted = True
        try:
            unfinished, unstarted, paused = conn.query(_UNFINISHED, None, deadline)[0]
        except GaveUp:
            break
        state.update(unfinished=unfinished, unstarted=unstarted, cron_paused=paused)
        if resubmitted and paused and unfinished == 0 and unstarted == 0:
            state["complete"] = True
            break
        time.sleep(0.25)
    state["stream_reads_done"] = load.await_reads(max(deadline, time.monotonic() + 5))
    state["seconds"] = round(time.monotonic() - began, 2)
    log.info("drain: %s", state)
    return state
