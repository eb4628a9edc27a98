"""Queues: draining 10,000 queued workflows with 1 and 4 worker processes, the latency from
enqueue to start on an idle worker (App and Client as enqueuer), and Client enqueue
throughput from 1 and 8 threads.

Worker processes are ``python -m benchmarks.procs queue-worker``: an App with the queue,
launched on ``go`` (so imports and connecting stay out of the measurement).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

import durably
from benchmarks.core import Child, Context, Measurement, Target, benchmark, percentile
from benchmarks.floor import FLOOR
from benchmarks.procs import NOOP, QUEUE, STAMP, QueueApp
from benchmarks.sidekit import latencies, threaded_rates, timed_drain

WORKER_COUNTS = (1, 4)


def enqueue_up_front(url: str, schema: str, n: int) -> float:
    """Enqueue ``n`` no-op workflows with no worker running; returns enqueues/s."""
    qa = QueueApp(url, schema)
    qa.app.launch(queues=[])  # an enqueuer only: claims nothing

    async def enqueue_all() -> None:
        for first in range(0, n, 1000):
            await asyncio.gather(
                *(qa.queue.enqueue_async(qa.noop) for _ in range(min(1000, n - first)))
            )

    try:
        started = time.perf_counter()
        asyncio.run(enqueue_all())
        return n / (time.perf_counter() - started)
    finally:
        qa.app.shutdown(grace=1)


def drain(ctx: Context, schema: str, n: int, workers: int) -> tuple[float, float]:
    """Start ``workers`` processes on ``n`` queued workflows; return (drain rate, seconds
    from ``go`` to the last completion). The drain rate counts from the first claim
    (started_at) to the last completion, so process launch is not in it."""
    count_sql = (
        f"SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
        f"extract(epoch FROM min(started_at)), extract(epoch FROM max(completed_at)) "
        f'FROM "{schema}".workflows WHERE queue_name = %s'
    )

    def progress(conn: psycopg.Connection[Any]) -> tuple[int, float, float]:
        fetched = conn.execute(count_sql, (QUEUE,)).fetchone()
        assert fetched is not None
        return int(fetched[0]), float(fetched[1] or 0), float(fetched[2] or 0)

    children = [
        Child.durably("queue-worker", "--url", ctx.url, "--schema", schema) for _ in range(workers)
    ]
    return timed_drain(children, ctx.url, n, progress)


@benchmark("queue-throughput")
def queue_throughput(ctx: Context) -> list[Measurement]:
    """10,000 queued no-op workflows (enqueued up front) drained by 1 and 4 worker processes."""
    n = ctx.size(10_000, 1_000)
    out: list[Measurement] = []
    enqueue_rates: list[float] = []
    for workers in WORKER_COUNTS:
        rates: list[float] = []
        totals: list[float] = []
        for _ in range(ctx.heavy_repeats):
            with ctx.schema() as schema:
                enqueue_rates.append(enqueue_up_front(ctx.url, schema, n))
                rate, total = drain(ctx, schema, n, workers)
                rates.append(rate)
                totals.append(total)
                ctx.log(f"{workers} worker(s): {rate:,.0f} workflows/s, {total:.2f} s from go")
        plural = "es" if workers > 1 else ""
        out += [
            Measurement(
                f"queue.w{workers}.wf_per_s",
                f"queue drain, {n:,} no-op workflows, {workers} worker process{plural}",
                "/s", rates, target=Target("min_x_dbos", 5.0),
                note="first claim to last completion",
            ),
            Measurement(
                f"queue.w{workers}.total_s",
                f"queue, {workers} worker process{plural}: launch to last completion",
                "s", totals, note="includes each worker's launch",
            ),
        ]  # fmt: skip
    out.append(
        Measurement(
            "queue.enqueue_up_front",
            "enqueue up front (App, asyncio.gather of 1,000)",
            "/s",
            enqueue_rates,
            note=f"{n:,} per sample, no worker running",
            comparable=False,
        )
    )
    return out


@benchmark("enqueue-latency")
def enqueue_latency(ctx: Context) -> list[Measurement]:
    """Enqueue to start on an idle worker process: p50/p99 of 200 sequential enqueues."""
    n = ctx.size(200, 40)
    gap = 0.02
    samples: dict[str, list[list[float]]] = {"app": [], "client": []}
    with ctx.schema() as schema:
        qa = QueueApp(ctx.url, schema)
        qa.app.launch(queues=[])  # the enqueuer claims nothing: the worker process runs it
        client = durably.Client(ctx.url, schema=schema)
        worker = Child.durably("queue-worker", "--url", ctx.url, "--schema", schema)
        try:
            worker.expect("ready")
            worker.send("go")
            worker.expect("launched")
            time.sleep(0.5)  # its LISTEN connection is up

            def by_app() -> float:
                t0 = time.time()
                return float(qa.queue.enqueue(qa.stamp).result(timeout=30)) - t0

            def by_client() -> float:
                t0 = time.time()
                return float(client.enqueue(QUEUE, STAMP).result(timeout=30)) - t0

            latencies(by_app, 10, gap)  # warm up both paths
            latencies(by_client, 10, gap)
            for _ in range(ctx.repeats):
                samples["app"].append(latencies(by_app, n, gap))
                samples["client"].append(latencies(by_client, n, gap))
        finally:
            worker.close()
            client.close()
            qa.app.shutdown(grace=1)
    out: list[Measurement] = []
    for who, label in (("app", "App"), ("client", "Client")):
        runs = samples[who]
        for p in (50, 99):
            out.append(
                Measurement(
                    f"enqueue.{who}.p{p}",
                    f"enqueue -> start on an idle worker, {label} enqueues: p{p}",
                    "ms", [percentile(r, p) * 1000 for r in runs],
                    ratio_to=FLOOR if p == 50 else None,
                    target=Target("max", 10.0) if p == 50 else None,
                    note=f"{n} sequential enqueues per repeat" if p == 50 else "",
                )
            )  # fmt: skip
    return out


@benchmark("client-enqueue")
def client_enqueue(ctx: Context) -> list[Measurement]:
    """durably.Client enqueue throughput from one process, 1 and 8 threads (no worker)."""
    per_thread = {1: ctx.size(1000, 200), 8: ctx.size(250, 50)}
    out: list[Measurement] = []
    with ctx.schema() as schema:
        qa = QueueApp(ctx.url, schema)
        _ = qa.app.engine  # creates the schema and declares the queue
        qa.app.shutdown(grace=0)
        with durably.Client(ctx.url, schema=schema) as client:
            for threads, count in per_thread.items():
                rates = threaded_rates(
                    lambda: client.enqueue(QUEUE, NOOP), threads, count, ctx.repeats
                )
                out.append(
                    Measurement(
                        f"client.enqueue.t{threads}",
                        f"Client.enqueue, {threads} thread{'s' * (threads > 1)}: enqueues/s",
                        "/s", rates, note=f"{threads * count:,} per repeat",
                    )
                )  # fmt: skip
    return out
