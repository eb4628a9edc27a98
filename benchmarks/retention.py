"""Retention under load: ``gc`` deleting a large finished history while one worker
process drains a queue, beside the same drain with no gc running.

The history (1,000,000 finished workflows with one step each; 100,000 under --quick) is
written straight into the tables with one INSERT ... SELECT each, aged past the cutoff.
Each repeat drains a queue of no-op workflows twice with one worker process, each time
in a fresh schema with the same history: once alone (the baseline) and once while
``Client.gc`` deletes the history in batches of 1,000.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import durably
from benchmarks.core import Context, Measurement, benchmark
from benchmarks.queues import drain, enqueue_up_front

HISTORY_SQL = """
INSERT INTO {schema}.workflows
    (id, name, status, inputs, output, max_recovery_attempts, created_at, updated_at,
     completed_at)
SELECT 'old-' || i, 'bench.history', 'SUCCESS', '[]'::jsonb, 'null'::jsonb, 10,
       now() - interval '40 days', now() - interval '40 days', now() - interval '40 days'
FROM generate_series(1, %(n)s) AS i;
INSERT INTO {schema}.operations (workflow_id, step, name, kind, output, started_at,
                                 completed_at)
SELECT 'old-' || i, 0, 'bench.step', 'step', '1'::jsonb, now() - interval '40 days',
       now() - interval '40 days'
FROM generate_series(1, %(n)s) AS i;
"""


def fill_history(ctx: Context, schema: str, n: int) -> float:
    """Write ``n`` finished workflows (one step each), aged 40 days; returns seconds."""
    started = time.perf_counter()
    with ctx.connect() as conn:
        for statement in HISTORY_SQL.format(schema=f'"{schema}"').split(";"):
            if statement.strip():
                conn.execute(statement, {"n": n})
        conn.execute(f'VACUUM ANALYZE "{schema}".workflows')
        conn.execute(f'VACUUM ANALYZE "{schema}".operations')
    return time.perf_counter() - started


@benchmark("gc-while-draining", default=False)
def gc_while_draining(ctx: Context) -> list[Measurement]:
    """gc of 1M finished workflows while a worker drains a queue, beside the drain alone."""
    history = ctx.size(1_000_000, 100_000)
    n = ctx.size(20_000, 5_000)
    alone: list[float] = []
    during: list[float] = []
    deleted_per_s: list[float] = []
    for _ in range(ctx.heavy_repeats):
        for with_gc in (False, True):
            with ctx.schema() as schema:
                with durably.Client(ctx.url, schema=schema) as client:
                    _ = client.engine  # creates the schema
                took = fill_history(ctx, schema, history)
                ctx.log(f"{history:,} finished workflows written in {took:.1f} s")
                enqueue_up_front(ctx.url, schema, n)
                gone: list[float] = []

                def collect(schema: str = schema, gone: list[float] = gone) -> None:
                    with durably.Client(ctx.url, schema=schema) as client:
                        t0 = time.perf_counter()
                        collected = client.gc(timedelta(days=30), batch_size=1000)
                        gone.append(collected.workflows / (time.perf_counter() - t0))

                collector = threading.Thread(target=collect)
                if with_gc:
                    collector.start()
                rate, _ = drain(ctx, schema, n, 1)
                if not with_gc:
                    alone.append(rate)
                    ctx.log(f"drain alone {rate:,.0f}/s")
                    continue
                still = collector.is_alive()
                collector.join()
                during.append(rate)
                deleted_per_s += gone
                ctx.log(
                    f"drain during gc {rate:,.0f}/s (gc {'still running' if still else 'done'}"
                    f" at the drain's end); gc {gone[0]:,.0f} workflows/s"
                )
    return [
        Measurement(
            "gc.drain_alone", f"queue drain, {n:,} no-ops, 1 worker, {history:,} rows of history",
            "/s", alone, comparable=False, note="no gc running",
        ),
        Measurement(
            "gc.drain_during", "the same drain while gc deletes the history", "/s", during,
            comparable=False, note="ratio: drain during gc / drain alone",
            ratio_to="gc.drain_alone",
        ),
        Measurement(
            "gc.deleted_per_s", f"gc of {history:,} finished workflows (one step each)",
            "/s", deleted_per_s, comparable=False, note="batches of 1,000, while draining",
        ),
    ]  # fmt: skip
