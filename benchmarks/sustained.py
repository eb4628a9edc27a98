"""Hold the rate: a fixed offered load of queued jobs for minutes, with faults, on a
PostgreSQL server of the benchmark's own (so it can be restarted).

    python -m benchmarks.sustained                      # 5 minutes: steady, then faults
    python -m benchmarks.sustained --rate 2000 --workers 2
    python -m benchmarks.sustained --plan steady --minutes 30   # no faults, 30 minutes
    python -m benchmarks.sustained --engine procrastinate --plan steady --minutes 1 --rate 500

A producer process enqueues ``--rate`` jobs a second through a ``durably.Client``
(``benchmarks.sustained_proc``); ``--workers`` worker processes run them (1 ms of work
each). Every second a monitor reads, by the database's clock: jobs completed in that
second, enqueue-to-start p50/p99 of those jobs, queue depth, workflows rows and the dead
tuples of the hot tables. The plan (``--plan faults``, the default) runs a steady
stretch, then a worker SIGKILL and restart, a server crash and restart, and 60 s of
``pg_terminate_backend`` on every durably connection twice a second, each followed by a
stretch to recover in; ``--plan steady`` runs no faults.

It reports per phase: completion rate, latency, depth, dead tuples; per fault: the time
from the fault's end until the 3-second completion rate is back to 90% of the rate before
it, and until the backlog is drained; and at the end, that every acknowledged enqueue ran
and nothing is left PENDING without a live owner. Markdown to
``benchmarks/results/sustained.md``, every sample to ``sustained.json``.

``--engine procrastinate`` runs the same steady plan on Procrastinate (in its venv,
``benchmarks/.venv-procrastinate``; ``benchmarks/procrastinate_side.py``'s
``sustained-*`` processes): async jobs of 1 ms (``asyncio.sleep``), deferred with
``defer_async``, the monitor reading its own tables (``procrastinate_events`` for the
times, ``procrastinate_jobs`` for depth and dead tuples); its results go to
``sustained-procrastinate.md``. It runs no faults: a worker that is killed leaves its jobs
in ``doing`` until something calls Procrastinate's ``retry_stalled_jobs``, which would be
a setup of the benchmark's own rather than Procrastinate's behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from chaos.pg import Cluster

from benchmarks.core import Child
from benchmarks.procrastinate_venv import PROCRASTINATE as PROCRASTINATE_SIDE

RESULTS = Path(__file__).resolve().parent / "results"
QUEUE = "sustained"
MONITOR = "sustained-monitor"


@dataclass(frozen=True)
class Engine:
    """What the load runs on: its processes, and how the monitor reads its tables. Every
    SQL text has ``{schema}``; ``window`` counts the jobs finished in (``since``,
    ``until``] of ``queue`` with their enqueue-to-start p50 and p99 (intervals), and may
    use ``lo``, the value ``mark`` returned at the previous sample (a lower bound on the
    rows to read)."""

    name: str
    schema: str
    hot: str  # the table whose rows and dead tuples the report shows
    tables: tuple[str, ...]  # whose dead tuples are sampled
    window: str
    mark: str
    depth: str  # %s: the queue
    unfinished: str  # %s: the queue
    missing: str  # %s: how many the producer sent (sequence numbers 0..sent-1)
    stranded: str
    stranded_label: str
    worker: tuple[str, ...]  # argv, then --url URL
    producer: tuple[str, ...]  # argv, then --url URL --rate R --duration D
    setup: tuple[str, ...] = ()  # argv run once (then --url URL) before any process

    def sql(self, text: str) -> str:
        return text.format(schema=f'"{self.schema}"')


def _finished(wait: str, rest: str) -> str:
    """The monitor's window: how many jobs finished, and p50/p99 of ``wait``."""
    return f"""
SELECT count(*) AS done,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY {wait}) AS p50,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY {wait}) AS p99
{rest}"""


DURABLY = Engine(
    name="durably",
    schema="durably",
    hot="workflows",
    tables=("workflows", "operations", "executors"),
    window=_finished(
        "started_at - enqueued_at",
        """FROM {schema}.workflows
WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED') AND completed_at > %(since)s
  AND completed_at <= %(until)s AND queue_name = %(queue)s""",
    ),
    mark="SELECT 0",
    depth="SELECT count(*) FROM {schema}.workflows WHERE status = 'ENQUEUED' AND queue_name = %s",
    unfinished="""
SELECT count(*) FROM {schema}.workflows
WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name = %s
""",
    missing="""
SELECT count(*) FROM generate_series(0, %s - 1) AS s WHERE NOT EXISTS
(SELECT 1 FROM {schema}.workflows WHERE id = 'p' || s AND status = 'SUCCESS')
""",
    stranded="""
SELECT count(*) FROM {schema}.workflows w
WHERE w.status = 'PENDING' AND NOT EXISTS (
    SELECT 1 FROM {schema}.executors e
    WHERE e.id = w.executor_id
      AND e.heartbeat_at + make_interval(secs => e.lease_seconds) > now())
""",
    stranded_label="PENDING without a live owner",
    worker=(sys.executable, "-m", "benchmarks.sustained_proc", "worker"),
    producer=(sys.executable, "-m", "benchmarks.sustained_proc", "producer"),
)

PROCRASTINATE = Engine(
    name="procrastinate",
    schema="procrastinate",
    hot="procrastinate_jobs",
    tables=("procrastinate_jobs", "procrastinate_events", "procrastinate_workers"),
    # The times are the events' (now() of the transaction that changed the job's status).
    # Events are read from the id of the previous sample on: an event stamped after that
    # sample got its id after it (ids come from a sequence), so nothing is skipped, and
    # the table is not scanned whole every second.
    window=_finished(
        "wait",
        """FROM (
    SELECT (SELECT min(s.at) FROM {schema}.procrastinate_events s
            WHERE s.job_id = e.job_id AND s.type = 'started')
         - (SELECT min(d.at) FROM {schema}.procrastinate_events d
            WHERE d.job_id = e.job_id AND d.type = 'deferred') AS wait
    FROM {schema}.procrastinate_events e
    JOIN {schema}.procrastinate_jobs j ON j.id = e.job_id AND j.queue_name = %(queue)s
    WHERE e.id > %(lo)s AND e.type IN ('succeeded', 'failed')
      AND e.at > %(since)s AND e.at <= %(until)s
) AS finished""",
    ),
    mark="SELECT coalesce(max(id), 0) FROM {schema}.procrastinate_events",
    depth="""
SELECT count(*) FROM {schema}.procrastinate_jobs WHERE status = 'todo' AND queue_name = %s
""",
    unfinished="""
SELECT count(*) FROM {schema}.procrastinate_jobs
WHERE status IN ('todo', 'doing') AND queue_name = %s
""",
    missing=f"""
SELECT count(*) FROM generate_series(0, %s - 1) AS s WHERE s NOT IN
(SELECT (args->>'n')::bigint FROM {{schema}}.procrastinate_jobs
 WHERE status = 'succeeded' AND queue_name = '{QUEUE}')
""",
    # Its workers heartbeat every 10 s and count as stalled after 30 s (its defaults).
    stranded="""
SELECT count(*) FROM {schema}.procrastinate_jobs j
WHERE j.status = 'doing' AND NOT EXISTS (
    SELECT 1 FROM {schema}.procrastinate_workers w
    WHERE w.id = j.worker_id AND w.last_heartbeat > now() - interval '30 seconds')
""",
    stranded_label="'doing' without a live worker",
    worker=tuple(PROCRASTINATE_SIDE.argv("sustained-worker", "--schema", "procrastinate")),
    producer=tuple(PROCRASTINATE_SIDE.argv("sustained-producer", "--schema", "procrastinate")),
    setup=tuple(PROCRASTINATE_SIDE.argv("sustained-schema", "--schema", "procrastinate")),
)
ENGINES = {e.name: e for e in (DURABLY, PROCRASTINATE)}
TABLES_SQL = """
SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables
WHERE schemaname = %s AND relname = ANY(%s)
"""
KILL_SQL = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND application_name <> %s
"""


@dataclass
class Sample:
    t: float  # seconds since the load started
    done: int  # jobs completed in this second
    depth: int | None
    p50_ms: float | None
    p99_ms: float | None
    dead: dict[str, int] = field(default_factory=dict)
    live: dict[str, int] = field(default_factory=dict)


@dataclass
class Phase:
    name: str
    seconds: float
    fault: str | None = None  # done at the phase's start: worker-kill, server-restart,
    # backend-kills (for the whole phase)


def plan(kind: str, minutes: float) -> list[Phase]:
    if kind == "steady":
        total = minutes * 60
        return [Phase("warm-up", 20), Phase("steady", total - 20)]
    return [
        Phase("warm-up", 20),
        Phase("steady", 60),
        Phase("after worker kill", 45, "worker-kill"),
        Phase("after server restart", 45, "server-restart"),
        Phase("backend kills", 60, "backend-kills"),
        Phase("after backend kills", 60),
    ]


class Monitor(threading.Thread):
    """Samples the database once a second, through outages (a gap is a sample of None)."""

    def __init__(self, url: str, t0: float, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.url, self.t0, self.engine = url, t0, engine
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        since: Any = None
        lo: Any = 0
        engine = self.engine
        while not self.stop.wait(1.0 - (time.monotonic() - self.t0) % 1.0):
            t = round(time.monotonic() - self.t0)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self.url, autocommit=True, application_name=MONITOR, connect_timeout=2
                    )
                mark = conn.execute(engine.sql(engine.mark)).fetchone()[0]  # type: ignore[index]
                now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
                if since is None:
                    since, lo = now, mark
                    continue
                row = conn.execute(
                    engine.sql(engine.window),
                    {"since": since, "until": now, "queue": QUEUE, "lo": lo},
                ).fetchone()
                since, lo = now, mark
                depth = conn.execute(engine.sql(engine.depth), (QUEUE,)).fetchone()
                tables = conn.execute(TABLES_SQL, (engine.schema, list(engine.tables))).fetchall()
                assert row is not None and depth is not None
                self.samples.append(
                    Sample(
                        t, int(row[0]), int(depth[0]), _ms(row[1]), _ms(row[2]),
                        {r[0]: int(r[2]) for r in tables}, {r[0]: int(r[1]) for r in tables},
                    )
                )  # fmt: skip
            except psycopg.Error:
                conn = None
                self.samples.append(Sample(t, 0, None, None, None))


def _ms(interval: Any) -> float | None:
    return None if interval is None else interval.total_seconds() * 1000


class BackendKiller(threading.Thread):
    """Terminates every durably connection twice a second until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.killed = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name=MONITOR) as conn:
            while not self.stop.wait(0.5):
                row = conn.execute(KILL_SQL, (MONITOR,)).fetchone()
                self.killed += int(row[0]) if row else 0


def _worker(engine: Engine, url: str) -> Child:
    child = Child([*engine.worker, "--url", url])
    child.expect("ready")
    return child


def run(
    rate: float, workers: int, kind: str, minutes: float, keep: bool, engine: Engine = DURABLY
) -> dict[str, Any]:
    phases = plan(kind, minutes)
    duration = sum(p.seconds for p in phases)
    root = Path(tempfile.mkdtemp(prefix="durably-sustained-"))
    cluster = Cluster(root, {"io_method": "worker", "shared_buffers": "256MB"})
    events: list[tuple[float, str]] = []
    try:
        cluster.create()
        url = cluster.url
        if engine.setup:
            subprocess.run([*engine.setup, "--url", url], check=True)
        fleet = [_worker(engine, url) for _ in range(workers)]
        producer = Child(
            [*engine.producer, "--url", url, "--rate", str(rate), "--duration", str(duration)]
        )
        producer.expect("ready")
        t0 = time.monotonic()
        producer.send("go")
        monitor = Monitor(url, t0, engine)
        monitor.start()
        try:
            return _load(
                url, cluster, phases, fleet, producer, monitor, events, rate, workers, kind
            )
        except Exception:
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "sustained-failed.json").write_text(
                json.dumps({"events": events, "samples": [asdict(s) for s in monitor.samples]})
            )
            raise
    finally:
        if not keep:
            cluster.destroy()


def _load(
    url: str,
    cluster: Cluster,
    phases: list[Phase],
    fleet: list[Child],
    producer: Child,
    monitor: Monitor,
    events: list[tuple[float, str]],
    rate: float,
    workers: int,
    kind: str,
) -> dict[str, Any]:
    """The phases and their faults, then the drain and the final checks."""
    t0 = monitor.t0
    at = 0.0
    for phase in phases:
        events.append((time.monotonic() - t0, f"start {phase.name}"))
        print(f"[{time.monotonic() - t0:6.1f} s] {phase.name}", file=sys.stderr, flush=True)
        killer: BackendKiller | None = None
        if phase.fault == "worker-kill":
            os.kill(fleet[0].proc.pid, signal.SIGKILL)
            fleet[0].proc.wait()
            fleet[0] = _worker(monitor.engine, url)
        elif phase.fault == "server-restart":
            cluster.crash()
            cluster.start()
        elif phase.fault == "backend-kills":
            killer = BackendKiller(url)
            killer.start()
        if phase.fault in ("worker-kill", "server-restart"):
            events.append((time.monotonic() - t0, f"fault over: {phase.fault}"))
        at += phase.seconds
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        if killer is not None:
            killer.stop.set()
            killer.join()
            events.append((time.monotonic() - t0, "fault over: backend-kills"))
            events.append((time.monotonic() - t0, f"killed {killer.killed} backends"))
    behind = 0
    while True:  # the producer's last line says every enqueue was acknowledged
        line = producer.json(timeout=120)
        behind = max(behind, int(line.get("behind", 0)))
        if line.get("done"):
            sent = int(line["sent"])
            break
    engine = monitor.engine
    drained = _drain(engine, url)
    monitor.stop.set()
    monitor.join()
    with psycopg.connect(url, autocommit=True) as conn:
        stranded = conn.execute(engine.sql(engine.stranded)).fetchone()
        missing = conn.execute(engine.sql(engine.missing), (sent,)).fetchone()
    for child in fleet:
        child.close()
    producer.close()
    return {
        "engine": engine.name, "hot": engine.hot, "stranded_label": engine.stranded_label,
        "rate": rate, "workers": workers, "plan": kind, "phases": [asdict(p) for p in phases],
        "events": events, "samples": [asdict(s) for s in monitor.samples], "sent": sent,
        "drained_s": drained, "stranded": int(stranded[0]) if stranded else None,
        "behind": behind,
        "missing": int(missing[0]) if missing else None,
    }  # fmt: skip


def _drain(engine: Engine, url: str) -> float:
    """Seconds from the producer's end until every job it sent has finished."""
    started = time.monotonic()
    sql = engine.sql(engine.unfinished)
    with psycopg.connect(url, autocommit=True, application_name=MONITOR) as conn:
        while time.monotonic() - started < 600:
            row = conn.execute(sql, (QUEUE,)).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.5)
    return time.monotonic() - started


# ---------------------------------------------------------------------- report


def _rates(samples: list[dict[str, Any]], start: float, end: float) -> list[float]:
    return [s["done"] for s in samples if start < s["t"] <= end]


def summarize(result: dict[str, Any]) -> str:
    events = result["events"]
    # The load's own time only: not the drain after the producer stopped.
    horizon = sum(p["seconds"] for p in result["phases"])
    samples = [s for s in result["samples"] if s["t"] <= horizon]
    starts = [t for t, what in events if what.startswith("start ")]
    ends = [*starts[1:], horizon]
    hot = result.get("hot", DURABLY.hot)
    lines = [
        f"# Sustained load on {result.get('engine', DURABLY.name)}: {result['rate']:,.0f} jobs/s "
        f"offered, {result['workers']} worker process(es), plan {result['plan']}",
        "",
        f"| phase | seconds | completed/s | p50 ms | p99 ms | depth at end | {hot} rows "
        f"| dead tuples ({hot}) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    phase_rates: dict[str, float] = {}
    for phase, start, end in zip(result["phases"], starts, ends, strict=False):
        rates = _rates(samples, start, end)
        window = [s for s in samples if start < s["t"] <= end]
        p50 = [s["p50_ms"] for s in window if s["p50_ms"] is not None]
        p99 = [s["p99_ms"] for s in window if s["p99_ms"] is not None]
        last = next((s for s in reversed(window) if s["depth"] is not None), None)
        mean = statistics.fmean(rates) if rates else 0.0
        phase_rates[phase["name"]] = mean
        lines.append(
            f"| {phase['name']} | {end - start:.0f} | {mean:,.0f} "
            f"| {statistics.median(p50) if p50 else float('nan'):.1f} "
            f"| {max(p99) if p99 else float('nan'):.1f} "
            f"| {last['depth'] if last else '-'} "
            f"| {last['live'].get(hot, '-') if last else '-'} "
            f"| {last['dead'].get(hot, '-') if last else '-'} |"
        )
    lines += ["", "| fault | rate before | back to 90% after | backlog drained after |",
              "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for t_end, what in events:
        if not what.startswith("fault over: "):
            continue
        # The rate before: the 20 s before the phase the fault began in.
        fault_start = max(t for t, w in events if w.startswith("start ") and t <= t_end)
        before = _rates(samples, fault_start - 20, fault_start)
        if not before:
            continue
        base = statistics.fmean(before)
        depth0 = min((s["depth"] for s in samples if fault_start - 20 < s["t"] <= fault_start
                      and s["depth"] is not None), default=0)  # fmt: skip
        back = drained = None
        later = [s for s in samples if s["t"] > t_end]
        for i in range(len(later)):
            three = [s["done"] for s in later[max(0, i - 2) : i + 1]]
            if back is None and len(three) == 3 and statistics.fmean(three) >= 0.9 * base:
                back = later[i]["t"] - t_end
            if (
                drained is None
                and later[i]["depth"] is not None
                and later[i]["depth"] <= max(depth0, 0.05 * base)
            ):
                drained = later[i]["t"] - t_end
        label = what.removeprefix("fault over: ")
        lines.append(f"| {label} | {base:,.0f}/s | {_s(back)} | {_s(drained)} |")
    first = _rates(samples, starts[1], starts[1] + 60) if len(starts) > 1 else []
    last_minute = _rates(samples, horizon - 60, horizon)
    lines += [
        "",
        f"- offered {result['rate'] * horizon:,.0f}; the producer fell behind by up to "
        f"{result.get('behind', 0):,} (at most 512 enqueues wait for an answer)",
        f"- enqueues sent and acknowledged: {result['sent']:,}; missing or unfinished after "
        f"the drain: {result['missing']}; drained {result['drained_s']:.1f} s after the "
        f"producer stopped",
        f"- {result.get('stranded_label', DURABLY.stranded_label)} at the end: "
        f"{result['stranded']}",
        f"- first steady minute {statistics.fmean(first) if first else 0:,.0f}/s, last minute "
        f"{statistics.fmean(last_minute) if last_minute else 0:,.0f}/s",
    ]
    return "\n".join(lines) + "\n"


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=600.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plan", choices=["faults", "steady"], default="faults")
    parser.add_argument("--minutes", type=float, default=5.0, help="with --plan steady")
    parser.add_argument("--keep", action="store_true", help="keep the server's directory")
    parser.add_argument(
        "--engine", choices=sorted(ENGINES), default=DURABLY.name,
        help="what runs the jobs: durably, or Procrastinate in its venv (--plan steady only)",
    )  # fmt: skip
    parser.add_argument(
        "--output", default=None,
        help="Markdown file (default results/sustained.md, sustained-ENGINE.md for another "
        "engine)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    engine = ENGINES[args.engine]
    if engine is not DURABLY:
        if args.plan != "steady":
            parser.error(
                f"--engine {engine.name} runs --plan steady only: after a worker kill its jobs "
                "stay 'doing' until something calls its retry_stalled_jobs"
            )
        PROCRASTINATE_SIDE.ensure_venv()
    default = "sustained.md" if engine is DURABLY else f"sustained-{engine.name}.md"
    result = run(args.rate, args.workers, args.plan, args.minutes, args.keep, engine)
    text = summarize(result)
    out = Path(args.output or RESULTS / default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(text)
    ok = result["missing"] == 0 and result["stranded"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
