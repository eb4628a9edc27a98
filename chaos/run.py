"""One chaos run from start to end: cluster, workers, load and faults, drain, checks,
figures; and the cleanup of everything it started, whatever happens (errors, Ctrl-C,
a run that overstays its budget)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

import durably
from chaos import tables
from chaos.checks import check_all
from chaos.config import WF_SCHEMA, RunConfig
from chaos.control import Reader, Switches
from chaos.drain import drain
from chaos.fleet import Fleet
from chaos.inject import Injector
from chaos.load import Load
from chaos.lostreply import LostReplies
from chaos.pg import Cluster
from chaos.plan import make_plan
from chaos.progress import measure, stats
from chaos.replica import Pair
from chaos.report import build
from chaos.retry import Conn, retry
from chaos.snapshot import Snapshot, load
from chaos.violations import Stop
from durably.store import faults

log = logging.getLogger("chaos.run")
SLACK = 240.0  # beyond duration + drain: startup, checks, shutdown


@dataclass
class Outcome:
    """What a run leaves: its report, and while ``keep`` runs, its live database."""

    report: dict[str, Any]
    url: str
    stops: list[Stop]
    snapshot: Snapshot


@contextlib.contextmanager
def _watchdog(budget: float) -> Iterator[None]:
    """Interrupt the main thread (cleanup runs) if the run outlasts ``budget`` seconds."""
    done = threading.Event()

    def watch() -> None:
        if not done.wait(budget):
            log.error("the run outlasted its budget of %.0f s: interrupting it", budget)
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="chaos-watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, so that the cleanup
    runs (also when the run was started with SIGINT ignored, as background jobs are)."""
    if threading.current_thread() is threading.main_thread():

        def raise_interrupt(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt(signal.Signals(signum).name)

        signal.signal(signal.SIGINT, raise_interrupt)
        signal.signal(signal.SIGTERM, raise_interrupt)


def _snapshot(url: str) -> Snapshot:
    def read() -> Snapshot:
        with psycopg.connect(url, autocommit=True, application_name="chaos-check") as conn:
            return load(conn)

    return retry(read, "snapshot")


def execute(cfg: RunConfig, keep: Callable[[Outcome], None] | None = None) -> dict[str, Any]:
    """Run ``cfg``; ``keep`` is called with the outcome while the database still lives."""
    cfg.check()
    rundir = cfg.out or Path(tempfile.mkdtemp(prefix=f"chaos-{cfg.seed}-"))
    rundir.mkdir(parents=True, exist_ok=True)
    os.chmod(rundir, 0o711)  # noqa: S103 - search only: the server's user reaches pg/
    handler = logging.FileHandler(rundir / "driver.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    _interrupt_on_signals()
    try:
        with _watchdog(cfg.duration + cfg.drain_deadline + SLACK):
            report = _execute(cfg, rundir, keep)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    (rundir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def _execute(
    cfg: RunConfig, rundir: Path, keep: Callable[[Outcome], None] | None
) -> dict[str, Any]:
    plan = make_plan(cfg.seed, cfg.duration, cfg.faults, cfg.workers)
    (rundir / "plan.json").write_text(json.dumps([a.__dict__ for a in plan], indent=1))
    # A failover needs a standby: a synchronous one, so that the guarantees hold.
    server: Cluster | Pair = (
        Pair(rundir / "pg", synchronous=True)
        if "failover" in cfg.faults
        else Cluster(rundir / "pg")
    )
    with server as cluster:
        conn = Conn(cluster.url, "chaos-driver")
        tables.create(conn)
        os.environ["PGAPPNAME"] = "chaos-client"  # the Client's connections, for terminate
        client = durably.Client(cluster.url, schema=WF_SCHEMA)
        retry(lambda: client.engine, "connect the client")
        switches = Switches(rundir)
        reader = Reader(rundir)
        lost = LostReplies(rundir, "driver", 0, cfg.seed, cfg.lost_reply_p, reader)
        faults.install(lost)  # the Client's writes (enqueue, send) lose replies too
        fleet = Fleet(cfg, cluster.url, rundir)
        load_ = Load(cfg, client, cluster.url)
        try:
            fleet.start_all()
            injector = Injector(cluster, fleet, switches, conn)
            load_.start()
            began = time.monotonic()
            for action in plan:
                _wait_until(began + action.at, fleet)
                injector.perform(action)
            _wait_until(began + cfg.duration, fleet)
            drained = drain(cluster, fleet, switches, injector, load_, conn, rundir,
                            cfg.drain_deadline)  # fmt: skip
            fleet.shutdown()
            lost.dump()
            snap = _snapshot(cluster.url)
            records = injector.records
            stops = [Stop(r.pid, r.detail["stopped_at"], r.t_end) for r in records
                     if r.kind == "sigstop" and r.pid is not None]  # fmt: skip
            findings = check_all(snap, stops)
            cpu = [v for r in records if r.kind == "pg_restart"
                   for v in r.detail.get("worker_cpu_pct_while_down", {}).values()]  # fmt: skip
            extra = {
                "drain": drained,
                "worker_crashes": fleet.crashes,
                "driver_errors": load_.errors,
                "pg_down_worker_cpu_pct": stats(cpu) if cpu else None,
                "workers": [s.history for s in fleet.slots],
            }
            report = build(cfg, rundir, snap, findings, records, measure(snap, records), extra)
            if keep is not None:
                keep(Outcome(report, cluster.url, stops, snap))
            return report
        finally:
            faults.install(None)
            reader.close()
            load_.close()
            fleet.shutdown(grace=5)
            with contextlib.suppress(Exception):
                client.close()
            conn.close()


def _wait_until(when: float, fleet: Fleet) -> None:
    """Sleep until ``when`` (monotonic); restart workers that died unasked meanwhile."""
    while True:
        left = when - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.25))
        fleet.revive()
