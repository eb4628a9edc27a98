"""History: what a large finished history costs the paths that must not feel it (queue
claims, listings), and the recovery of large backlogs.

``history`` (``--only history``) writes 1,000,000 finished workflows (100,000 under
--quick), each with one recorded step, straight into a fresh schema with one
``INSERT ... SELECT generate_series`` per table, once per run, then VACUUM ANALYZE.
Their columns are what finished work leaves behind: 97% SUCCESS, 2% ERROR, 1%
CANCELLED; most on a queue (``bench``, a rate-limited and a partitioned one) with
enqueue and start times; created over the last seven days up to now. Beside a schema
with no history it measures:

- each claim statement (plain, partitioned, rate-limited queue) exactly as the store
  builds it (``QueueStatements.claim_queued``, prepared, taking the queue's lock first
  when the queue is serialised), taking 100 of 1,000 queued workflows in a transaction
  that is rolled back; and the same under ``plan_cache_mode = force_generic_plan``
  (PostgreSQL may switch a prepared statement to its generic plan after five runs);
- a queue drain by one worker process (``benchmarks.procs queue-worker``);
- ``Client.list_workflows`` pages (50 rows, newest first as the dashboard and CLI ask)
  for every filter and the combinations the dashboard uses, 20 calls each after
  warming up, so that a prepared statement's generic plan is what gets measured if
  PostgreSQL picks one. Each listing's EXPLAIN (ANALYZE, BUFFERS) is logged.

``recovery-backlog`` (``--only recovery-backlog``): 2,000 and 100,000 workflows left
pending by a worker killed with SIGKILL (the ``recovery`` benchmark's workflows: async,
three steps, killed in the second), recovered by a new process launched with the same
executor ID; for 100,000 also the recovering process's peak RSS. Up to 2,000 are left
by a real crash; a larger backlog copies those rows (workflow and recorded steps, every
column) under new IDs, so the whole backlog has the shape a crash leaves.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import durably
from benchmarks.core import Child, Context, Measurement, Target, benchmark, wait_until
from benchmarks.procs import NOOP, RECOVER, QueueApp
from benchmarks.queues import enqueue_up_front
from durably.info import list_query

RATED = "hist.rated"
PARTED = "hist.parted"
PARTITIONS = 100

# The finished history: one row per i. Statuses, names and queues use different moduli
# so that their combinations all occur (a rare name also has errors, etc.).
HISTORY_SQL = """
INSERT INTO {schema}.workflows
    (id, name, status, inputs, output, error, executor_id, epoch, max_recovery_attempts,
     codec, created_at, updated_at, completed_at, queue_name, partition_key, enqueued_at,
     started_at, claim_token, app_version)
SELECT 'hist-' || i,
       CASE WHEN i %% 1009 = 0 THEN 'hist.rare' ELSE 'hist.wf' || (i %% 5) END,
       CASE WHEN i %% 97 < 2 THEN 'ERROR' WHEN i %% 97 = 2 THEN 'CANCELLED'
            ELSE 'SUCCESS' END,
       jsonb_build_object('args', jsonb_build_array(i), 'kwargs', '{{}}'::jsonb),
       CASE WHEN i %% 97 > 2 THEN to_jsonb(i) END,
       CASE WHEN i %% 97 < 2 THEN jsonb_build_object(
           'type', 'builtins.ValueError', 'message', 'boom', 'args', jsonb_build_array('boom'),
           'traceback', 'Traceback (most recent call last):\n  ...\nValueError: boom\n') END,
       'hist-exec-' || (i %% 8), 2, 50, 'json',
       t, t + interval '40 milliseconds', t + interval '40 milliseconds',
       q, CASE WHEN q = '{parted}' THEN 'p' || (i %% {partitions}) END,
       CASE WHEN q IS NOT NULL THEN t END,
       CASE WHEN q IS NOT NULL THEN t + interval '5 milliseconds' END,
       md5(i::text), 'v1'
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT now() - (%(n)s - i) * (interval '7 days' / %(n)s) AS t,
                     CASE i %% 10 WHEN 0 THEN NULL WHEN 1 THEN NULL
                                  WHEN 6 THEN '{rated}' WHEN 7 THEN '{rated}'
                                  WHEN 8 THEN '{parted}' WHEN 9 THEN '{parted}'
                                  ELSE 'bench' END AS q) AS x
"""
HISTORY_OPERATIONS_SQL = """
INSERT INTO {schema}.operations
    (workflow_id, step, name, kind, output, started_at, completed_at, epoch, attempts)
SELECT 'hist-' || i, 1, 'hist.step', 'step', to_jsonb(i), t, t + interval '20 milliseconds',
       2, 1
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT now() - (%(n)s - i) * (interval '7 days' / %(n)s) AS t) AS x
"""


def fill_history(ctx: Context, schema: str, n: int) -> float:
    """Write ``n`` finished workflows (one step each) into ``schema``; returns seconds."""
    started = time.perf_counter()
    with ctx.connect() as conn:
        for template in (HISTORY_SQL, HISTORY_OPERATIONS_SQL):
            sql = template.format(
                schema=f'"{schema}"', rated=RATED, parted=PARTED, partitions=PARTITIONS
            )
            conn.execute(sql.encode(), {"n": n})
        conn.execute(f'VACUUM ANALYZE "{schema}".workflows'.encode())
        conn.execute(f'VACUUM ANALYZE "{schema}".operations'.encode())
    return time.perf_counter() - started


@contextmanager
def history_schema(ctx: Context, n: int) -> Iterator[str]:
    """A fresh schema with ``n`` finished workflows (none when 0), dropped afterwards."""
    with ctx.schema("hist") as schema:
        with durably.Client(ctx.url, schema=schema) as client:
            _ = client.engine  # creates the schema
        if n:
            took = fill_history(ctx, schema, n)
            ctx.log(f"{n:,} finished workflows (one step each) written in {took:.1f} s")
        yield schema


# ---------------------------------------------------------------------- claims


class ClaimProbe:
    """The three kinds of queue, 1,000 queued no-ops each, and their claim statements."""

    QUEUED = 1000
    WANT = 100

    def __init__(self, ctx: Context, schema: str) -> None:
        self.ctx = ctx
        self.qa = qa = QueueApp(ctx.url, schema)
        self.rated = qa.app.queue(RATED, rate_limit=(1_000_000, 60.0))
        self.parted = qa.app.queue(PARTED, partition_concurrency=1)
        qa.app.launch(queues=[])  # an enqueuer: claims nothing

        async def enqueue_all() -> None:
            noop = qa.noop
            await asyncio.gather(*(qa.queue.enqueue_async(noop) for _ in range(self.QUEUED)))
            await asyncio.gather(*(self.rated.enqueue_async(noop) for _ in range(self.QUEUED)))
            await asyncio.gather(
                *(
                    noop.options(queue=PARTED, partition_key=f"p{i % PARTITIONS}").start_async()
                    for i in range(self.QUEUED)
                )
            )

        asyncio.run(enqueue_all())
        # Statistics as autovacuum keeps them (it analyzes after 2% of the rows change),
        # so that both schemas plan with what they hold.
        with ctx.connect() as conn:
            conn.execute(f'ANALYZE "{schema}".workflows'.encode())

    def close(self) -> None:
        self.qa.app.shutdown(grace=1)

    def statements(self, queue: str) -> list[Any]:
        """What dispatch sends for one claim of ``queue``: its lock (when the queue is
        serialised) and the claim."""
        engine = self.qa.app.engine
        qs = engine.queue_statements
        claim = qs.claim_queued(
            queue=queue, executor_id="hist-probe", names=[NOOP], want=self.WANT,
            partitioned=queue == PARTED, app_version=engine.versions.current, versions=None,
        )  # fmt: skip
        return [claim] if queue == "bench" else [qs.lock_queue(queue), claim]

    def time_claims(self, queue: str, repeats: int, generic: bool) -> list[float]:
        """ms per claim statement (its lock not counted), rolled back each time."""
        out = []
        with self.ctx.connect() as conn:
            for _ in range(repeats + 3):
                *lock, claim = self.statements(queue)
                with conn.transaction(force_rollback=True):
                    if generic:
                        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    for st in lock:
                        conn.execute(st.sql, st.params, prepare=True)
                    t0 = time.perf_counter()
                    rows = conn.execute(claim.sql, claim.params, prepare=True).fetchall()
                    out.append((time.perf_counter() - t0) * 1000)
                if len(rows) != self.WANT:
                    raise AssertionError(f"claim of {queue} took {len(rows)}, not {self.WANT}")
        return out[3:]  # the first runs plan and warm the cache

    def explain(self, queue: str) -> str:
        """EXPLAIN (ANALYZE, BUFFERS) of one claim, summarised."""
        with self.ctx.connect() as conn, conn.transaction(force_rollback=True):
            *lock, claim = self.statements(queue)
            for st in lock:
                conn.execute(st.sql, st.params)
            return summarise(explain(conn, claim.sql, claim.params))


def explain(conn: psycopg.Connection[Any], sql: str, params: Any) -> dict[str, Any]:
    row = conn.execute(
        ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql).encode(), params
    ).fetchone()
    assert row is not None
    data = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return data[0]  # type: ignore[no-any-return]


def summarise(plan: dict[str, Any]) -> str:
    """An EXPLAIN (FORMAT JSON) in one line: time, buffers, the scans and what they read."""
    scans: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node.get("Node Type", "")
        if "Scan" in kind and "Function" not in kind and "CTE" not in kind:
            target = node.get("Index Name") or node.get("Relation Name") or ""
            rows = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
            scans.append(f"{kind} {target} ({rows:.0f} rows)")
        for child in node.get("Plans", []):
            walk(child)

    top = plan["Plan"]
    walk(top)
    hit = top.get("Shared Hit Blocks", 0)
    read = top.get("Shared Read Blocks", 0)
    return f"{plan.get('Execution Time', 0):.2f} ms, buffers hit {hit} read {read}; " + "; ".join(
        scans
    )


# ---------------------------------------------------------------------- drains


def drain_noops(ctx: Context, schema: str, n: int) -> float:
    """Enqueue ``n`` no-ops on ``bench`` and drain them with one worker process; returns
    workflows/s from the first start to the last completion (history not counted)."""
    with ctx.connect() as conn:
        since = conn.execute("SELECT clock_timestamp()").fetchone()
    assert since is not None
    enqueue_up_front(ctx.url, schema, n)
    child = Child.durably("queue-worker", "--url", ctx.url, "--schema", schema)
    try:
        child.expect("ready")
        with ctx.connect() as conn:
            child.send("go")
            # only this drain's workflows (an earlier drain's are in the same schema)
            count_sql = (
                f"SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
                f"extract(epoch FROM min(started_at)), extract(epoch FROM max(completed_at)) "
                f'FROM "{schema}".workflows WHERE name = %s AND created_at >= %s'
            )
            row: tuple[int, float, float] = (0, 0.0, 0.0)

            def done() -> bool:
                nonlocal row
                fetched = conn.execute(count_sql.encode(), (NOOP, since[0])).fetchone()
                assert fetched is not None
                row = (int(fetched[0]), float(fetched[1] or 0), float(fetched[2] or 0))
                return row[0] >= n

            wait_until(done, timeout=600, what=f"{n} queued workflows", interval=0.1)
        return n / (row[2] - row[1])
    finally:
        child.close()


# ---------------------------------------------------------------------- listings


def listings(now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, label, filters) of the listings measured: every filter alone, and the
    combinations the dashboard builds (a status, name or queue with a time range)."""
    day = timedelta(days=1)
    return [
        ("none", "no filter", {}),
        ("status_error", "status=ERROR (2%)", {"status": "ERROR"}),
        ("status_success", "status=SUCCESS (97%)", {"status": "SUCCESS"}),
        ("status_dead", "status=DEAD_LETTER (no row)", {"status": "DEAD_LETTER"}),
        ("status_two", "status=[ERROR, CANCELLED]", {"status": ["ERROR", "CANCELLED"]}),
        ("name", "name (20%)", {"name": "hist.wf1"}),
        ("name_rare", "name, rare (0.1%)", {"name": "hist.rare"}),
        ("name_absent", "name no row has", {"name": "hist.nobody"}),
        ("queue", "queue (40%)", {"queue": "bench"}),
        ("queue_absent", "queue no row has", {"queue": "hist.nobody"}),
        ("last_hour", "created in the last hour", {"created_after": now - timedelta(hours=1)}),
        ("range", "created 3 to 4 days ago",
         {"created_after": now - 4 * day, "created_before": now - 3 * day}),
        ("status_24h", "status=ERROR, last 24 h", {"status": "ERROR", "created_after": now - day}),
        ("dead_24h", "status=DEAD_LETTER, last 24 h",
         {"status": "DEAD_LETTER", "created_after": now - day}),
        ("status_name", "status=ERROR + name", {"status": "ERROR", "name": "hist.wf1"}),
        ("status_rare", "status=ERROR + rare name", {"status": "ERROR", "name": "hist.rare"}),
        ("status_queue", "status=ERROR + queue", {"status": "ERROR", "queue": RATED}),
        ("name_queue", "name + queue", {"name": "hist.wf2", "queue": PARTED}),
        ("rare_range", "rare name, 3 to 4 days ago",
         {"name": "hist.rare", "created_after": now - 4 * day, "created_before": now - 3 * day}),
        ("all", "status + name + queue + last 24 h",
         {"status": "ERROR", "name": "hist.wf3", "queue": "bench", "created_after": now - day}),
        ("ids", "ids=[one]", {"ids": ["hist-4242"]}),
        ("oldest_error", "status=ERROR, oldest first", {"status": "ERROR", "descending": False}),
    ]  # fmt: skip


def time_listings(
    ctx: Context, schema: str, repeats: int
) -> dict[str, tuple[str, list[float], str]]:
    """key -> (label, ms per call, EXPLAIN summary) of every listing, through the Client."""
    now = datetime.now(UTC)
    out: dict[str, tuple[str, list[float], str]] = {}
    with durably.Client(ctx.url, schema=schema) as client, ctx.connect() as conn:
        cases = listings(now)
        # The dashboard's second page: after the first page's last row.
        first = client.list_workflows(status="ERROR", limit=51, descending=True)
        last = first[49]
        cases.append(
            ("page2", "status=ERROR, page after a cursor",
             {"status": "ERROR", "after": (last.created_at, last.id)}),
        )  # fmt: skip
        for key, label, filters in cases:
            kwargs: dict[str, Any] = {"limit": 50, "descending": True, **filters}
            samples = []
            for _ in range(repeats + 5):  # past the prepared statement's five custom plans
                t0 = time.perf_counter()
                client.list_workflows(**kwargs)
                samples.append((time.perf_counter() - t0) * 1000)
            statement = list_query(client.engine.statements, **kwargs)
            plan = summarise(explain(conn, statement.sql, statement.params))
            out[key] = (label, samples[5:], plan)
            ctx.log(f"list {label}: {statistics.median(samples[5:]):.2f} ms; {plan}")
    return out


# ---------------------------------------------------------------------- the benchmark


@benchmark("history", default=False)
def history(ctx: Context) -> list[Measurement]:
    """Claims, drains and listings with 1M finished workflows beside none."""
    rows = ctx.size(1_000_000, 100_000)
    drained = ctx.size(5_000, 1_000)
    repeats = ctx.size(30, 10)
    claims: dict[tuple[str, int, bool], list[float]] = {}
    drains: dict[int, list[float]] = {0: [], rows: []}
    found: dict[str, tuple[str, list[float], str]] = {}
    for size in (0, rows):
        with history_schema(ctx, size) as schema:
            for _ in range(ctx.heavy_repeats):
                rate = drain_noops(ctx, schema, drained)
                drains[size].append(rate)
                ctx.log(f"history {size:,}: drain of {drained:,} at {rate:,.0f}/s")
            probe = ClaimProbe(ctx, schema)
            try:
                for queue in ("bench", PARTED, RATED):
                    for generic in (False, True):
                        ms = probe.time_claims(queue, repeats, generic)
                        claims[(queue, size, generic)] = ms
                    ctx.log(
                        f"history {size:,}: claim {queue}: "
                        f"{statistics.median(claims[(queue, size, False)]):.2f} ms "
                        f"(generic plan {statistics.median(claims[(queue, size, True)]):.2f} ms); "
                        f"{probe.explain(queue)}"
                    )
            finally:
                probe.close()
            if size:
                found = time_listings(ctx, schema, ctx.size(20, 10))
    out: list[Measurement] = []
    kinds = {"bench": "plain", PARTED: "partitioned", RATED: "rate-limited"}
    for queue, kind in kinds.items():
        key = f"history.claim.{kind}"
        out.append(
            Measurement(
                f"{key}.empty", f"claim 100 of a {kind} queue, no history", "ms",
                claims[(queue, 0, False)], comparable=False,
                note=f"generic plan {statistics.median(claims[(queue, 0, True)]):.2f} ms",
            )
        )  # fmt: skip
        out.append(
            Measurement(
                f"{key}.full", f"the same claim, {rows:,} finished workflows", "ms",
                claims[(queue, rows, False)], ratio_to=f"{key}.empty", comparable=False,
                target=Target("max", 1.3 * statistics.median(claims[(queue, 0, False)])),
                note=f"x no history (target <= 1.3x); generic plan "
                f"{statistics.median(claims[(queue, rows, True)]):.2f} ms",
            )
        )  # fmt: skip
    out += [
        Measurement(
            "history.drain.empty", f"queue drain, {drained:,} no-ops, 1 worker, no history",
            "/s", drains[0], comparable=False, note="first start to last completion",
        ),
        Measurement(
            "history.drain.full", f"the same drain, {rows:,} finished workflows", "/s",
            drains[rows], ratio_to="history.drain.empty", comparable=False,
            note="x no history",
        ),
    ]  # fmt: skip
    for key, (label, samples, plan) in found.items():
        out.append(
            Measurement(
                f"history.list.{key}", f"list_workflows at {rows:,}: {label}", "ms", samples,
                target=Target("max", 10.0), comparable=False, note=plan.split(";")[0],
            )
        )  # fmt: skip
    return out


# ---------------------------------------------------------------------- recovery

# Columns a copy of a pending workflow (or of its recorded step) takes unchanged.
_COPY_SQL = """
SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position),
       string_agg('{alias}.' || quote_ident(column_name), ', ' ORDER BY ordinal_position)
FROM information_schema.columns
WHERE table_schema = %s AND table_name = %s AND column_name NOT IN ({skip})
"""


def copy_backlog(conn: psycopg.Connection[Any], schema: str, executor: str, copies: int) -> None:
    """Add ``copies`` copies of each of ``executor``'s pending workflows and their
    recorded steps, under new IDs (``<id>~<k>``), created just after the original."""
    wcols = conn.execute(_COPY_SQL.format(alias="w", skip="'id', 'created_at'").encode(),
                         (schema, "workflows")).fetchone()  # fmt: skip
    ocols = conn.execute(_COPY_SQL.format(alias="o", skip="'workflow_id'").encode(),
                         (schema, "operations")).fetchone()  # fmt: skip
    assert wcols is not None and ocols is not None
    s = f'"{schema}"'
    conn.execute(
        f"INSERT INTO {s}.workflows (id, created_at, {wcols[0]}) "
        f"SELECT w.id || '~' || k, w.created_at + k * interval '1 microsecond', {wcols[1]} "
        f"FROM {s}.workflows w, generate_series(1, %(copies)s) AS k "
        f"WHERE w.executor_id = %(executor)s AND w.status = 'PENDING'".encode(),
        {"copies": copies, "executor": executor},
    )
    conn.execute(
        f"INSERT INTO {s}.operations (workflow_id, {ocols[0]}) "
        f"SELECT o.workflow_id || '~' || k, {ocols[1]} "
        f"FROM {s}.operations o JOIN {s}.workflows w ON w.id = o.workflow_id, "
        f"generate_series(1, %(copies)s) AS k "
        f"WHERE w.executor_id = %(executor)s AND w.status = 'PENDING' "
        f"AND w.id NOT LIKE '%%~%%'".encode(),
        {"copies": copies, "executor": executor},
    )
    conn.execute(f"VACUUM ANALYZE {s}.workflows".encode())
    conn.execute(f"VACUUM ANALYZE {s}.operations".encode())


REAL_CRASH = 2000


def recover_backlog(ctx: Context, n: int) -> dict[str, Any]:
    """Leave ``n`` workflows pending (a crash, copied up past REAL_CRASH), recover them
    in a new process; returns seconds, launch seconds, outcomes and the peak RSS."""
    with ctx.schema() as schema, ctx.connect() as conn:
        executor = f"bench-backlog-{uuid.uuid4().hex[:8]}"
        common = ["--url", ctx.url, "--schema", schema, "--executor-id", executor]
        real = min(n, REAL_CRASH)
        if n % real:
            raise ValueError(f"a backlog of {n} is not a multiple of {real}")
        crasher = Child.durably("crasher", *common, "--count", str(real))
        try:
            crasher.expect("ready")
            crasher.send("go")
            first_steps = f'SELECT count(*) FROM "{schema}".operations WHERE step = 1'

            def stuck() -> bool:
                row = conn.execute(first_steps.encode()).fetchone()
                return row is not None and row[0] >= real

            wait_until(stuck, timeout=600, what=f"{real} workflows past their first step")
        finally:
            crasher.kill()
        if n > real:
            t0 = time.perf_counter()
            copy_backlog(conn, schema, executor, n // real - 1)
            took = time.perf_counter() - t0
            ctx.log(f"copied {real:,} pending workflows up to {n:,} in {took:.1f} s")
        recoverer = Child.durably("recoverer", *common)
        try:
            recoverer.expect("ready")
            recoverer.send("go")
            info = recoverer.json()
            final = (
                f"SELECT count(*) FILTER (WHERE status NOT IN ('PENDING', 'ENQUEUED')), "
                f"count(*) FILTER (WHERE status = 'SUCCESS'), "
                f"extract(epoch FROM max(coalesce(completed_at, updated_at))), "
                f"max(recovery_attempts) "
                f'FROM "{schema}".workflows WHERE name = %s'
            )
            row: tuple[Any, ...] = ()

            def finished() -> bool:
                nonlocal row
                fetched = conn.execute(final.encode(), (RECOVER,)).fetchone()
                assert fetched is not None
                row = tuple(fetched)
                return int(fetched[0]) >= n

            wait_until(finished, timeout=1800, what=f"{n} recovered workflows", interval=0.25)
            recoverer.send("status")
            status = recoverer.json()
        finally:
            recoverer.close()
        _, succeeded, last_done, attempts = row
        return {
            "seconds": float(last_done) - info["launch_called"],
            "launch": info["launch_returned"] - info["launch_called"],
            "succeeded": int(succeeded), "max_attempts": int(attempts),
            "peak_rss_mib": status.get("VmHWM", 0.0), "error": info.get("error"),
        }  # fmt: skip


@benchmark("recovery-backlog", default=False)
def recovery_backlog(ctx: Context) -> list[Measurement]:
    """Recovery of 2,000 and of 100,000 pending workflows by one new process (peak RSS)."""
    large = ctx.size(100_000, 10_000)
    out: list[Measurement] = []
    for n, repeats in ((2000, ctx.heavy_repeats), (large, 1)):
        runs = []
        for _ in range(repeats):
            run = recover_backlog(ctx, n)
            runs.append(run)
            ctx.log(
                f"recovery of {n:,}: {run['seconds']:.2f} s, {run['succeeded']:,} SUCCESS, "
                f"max attempts {run['max_attempts']}, peak RSS {run['peak_rss_mib']:.0f} MiB"
                + (f"; launch() raised {run['error']}" if run["error"] else "")
            )
        note = (
            f"{min(r['succeeded'] for r in runs):,} SUCCESS at least, recovery attempts max "
            f"{max(r['max_attempts'] for r in runs)}"
        )
        target = Target("max", 1.0 if n <= 2000 else 30.0 * n / 100_000)
        out += [
            Measurement(
                f"recovery.backlog.{n}.seconds", f"recovery of {n:,}: launch() to all finished",
                "s", [r["seconds"] for r in runs], target=target, comparable=False, note=note,
            ),
            Measurement(
                f"recovery.backlog.{n}.wf_per_s", f"recovery of {n:,}: workflows/s", "/s",
                [r["succeeded"] / r["seconds"] for r in runs], comparable=False,
            ),
            Measurement(
                f"recovery.backlog.{n}.peak_rss", f"recovery of {n:,}: peak RSS of the process",
                "MiB", [r["peak_rss_mib"] for r in runs], comparable=False,
                note="VmHWM of the recovering process",
            ),
        ]  # fmt: skip
    return out
