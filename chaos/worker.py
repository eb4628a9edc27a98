"""A chaos worker process: ``python -m chaos.worker '<json config>'``.

It runs the workload on a durably App with a short lease, drops replies when the driver
says so, and starts workflows of its own from a thread (top-level ``wf.start`` with IDs
recorded in ``chaos.expected`` first, so a start cut short is started again by the next
incarnation of this worker slot). SIGTERM shuts it down gracefully. It logs to
``worker-<slot>.log`` in the run directory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import durably
from chaos import shapes, tables
from chaos.config import CRON_NAME, LEASE, PARK_AFTER, POLL_INTERVAL, WF_SCHEMA
from chaos.control import Reader
from chaos.effects import Recorder
from chaos.lostreply import LostReplies
from chaos.retry import Conn, GaveUp, retry
from chaos.workload import register
from durably.store import faults

log = logging.getLogger("chaos.worker")
LAUNCH_DEADLINE = 120.0
START_DEADLINE = 60.0
Flows = dict[str, durably.Workflow[Any, Any]]


def launch(cfg: dict[str, Any], rec: Recorder) -> tuple[durably.App, Flows]:
    """A launched App; a launch that fails (the database is down, say) is retried with a
    fresh App, as a supervisor would restart the process."""
    deadline = time.monotonic() + LAUNCH_DEADLINE
    while True:
        app = durably.App(
            cfg["url"], schema=WF_SCHEMA, executor_id=cfg["executor_id"], lease=LEASE,
            park_after=PARK_AFTER, poll_interval=POLL_INTERVAL,
        )  # fmt: skip
        flows = register(app, rec)
        try:
            app.launch()
            return app, flows
        except Exception as exc:
            log.warning("launch failed (%r); retrying with a fresh App", exc)
            try:
                app.shutdown(grace=0)
            except Exception:
                log.warning("shutdown of the failed App failed", exc_info=True)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Starter:
    """Starts workflows of this worker's own, at a steady seeded pace."""

    def __init__(self, cfg: dict[str, Any], flows: Flows, switches: Reader, stop: threading.Event):
        self.cfg = cfg
        self.flows = flows
        self.switches = switches
        self.stop = stop
        self.slot, self.inc = int(cfg["slot"]), int(cfg["incarnation"])
        self.origin = f"worker-{self.slot}"
        self.rng = random.Random(f"{cfg['seed']}:{self.slot}:{self.inc}:starts")
        self.conn = Conn(cfg["url"], f"chaos-starter-{self.slot}")
        self.ack = Path(cfg["rundir"]) / f"starts-done-{self.slot}-{self.inc}"

    def start(self, start: shapes.Start) -> None:
        wf = self.flows[start.workflow].options(id=start.workflow_id)
        try:
            retry(
                lambda: wf.start(*start.args),
                f"start {start.workflow_id}",
                time.monotonic() + START_DEADLINE,
                transient=(Exception,),
                stop=self.stop.is_set,
            )
        except GaveUp as exc:
            log.error("could not start %s: %s", start.workflow_id, exc)

    def restart_unstarted(self) -> None:
        """Start again, by the same IDs, recorded starts whose workflow does not exist."""
        for start in tables.unstarted(self.conn, self.origin):
            log.info("starting again %s", start.workflow_id)
            self.start(start)

    def run(self) -> None:
        try:
            self.restart_unstarted()
            period = 1.0 / float(self.cfg["worker_rate"]) if self.cfg["worker_rate"] else None
            n = 0
            while not self.stop.is_set():
                if period is None or not self.switches.get("starts"):
                    break
                if self.stop.wait(self.rng.uniform(0.5, 1.5) * period):
                    return
                n += 1
                shape = shapes.pick(self.rng, shapes.WORKER_WEIGHTS)
                group = shapes.plan(shape, self.rng, f"w{self.slot}.{self.inc}-{n:04d}", False)
                for start in group.starts:
                    tables.record_expected(self.conn, start, self.origin)
                    self.start(start)
            self.restart_unstarted()
        except Exception:
            log.exception("the starter thread failed")
        finally:
            self.ack.write_text(str(os.getpid()))  # no more starts from this process


def set_cron(app: durably.App, running: bool) -> None:
    """Pause or resume the cron schedule (as the driver's switch says)."""
    change = app.resume_schedule if running else app.pause_schedule
    retry(lambda: change(CRON_NAME), "pause or resume the cron schedule", transient=(Exception,))


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[1])
    rundir = Path(cfg["rundir"])
    slot, inc = int(cfg["slot"]), int(cfg["incarnation"])
    logging.basicConfig(
        # CHAOS_LOG_LEVEL=DEBUG also logs each run that stops here (another owner, say)
        level=os.environ.get("CHAOS_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s w{slot}.{inc} pid{os.getpid()} %(name)s %(levelname)s %(message)s",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    switches = Reader(rundir)
    lost = LostReplies(
        rundir, str(slot), inc, int(cfg["seed"]), float(cfg["lost_reply_p"]), switches
    )
    faults.install(lost)
    rec = Recorder(cfg["url"], slot)
    app, flows = launch(cfg, rec)
    log.info("launched as executor %s", cfg["executor_id"])
    (rundir / f"ready-{slot}-{inc}").write_text(str(os.getpid()))
    starter = Starter(cfg, flows, switches, stop)
    threading.Thread(target=starter.run, name="chaos-starter", daemon=True).start()
    cron = True
    while not stop.wait(0.5):
        lost.dump()
        if cron != switches.get("cron"):
            try:
                set_cron(app, not cron)
                cron = not cron
                log.info("cron schedule %s", "resumed" if cron else "paused")
            except GaveUp:
                log.exception("could not change the cron schedule")
    log.info("SIGTERM: shutting down")
    app.shutdown(grace=5)
    lost.dump()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
