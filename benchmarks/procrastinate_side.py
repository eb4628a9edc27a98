"""The Procrastinate side of durably's queue benchmarks: the same figures, measured the same
way, on the same PostgreSQL in the same run; and the processes of the sustained-load
benchmark with ``--engine procrastinate``.

It runs in its own virtual environment (``benchmarks/.venv-procrastinate``, made by
``benchmarks.procrastinate_venv``; Procrastinate is never a dependency of durably), one
process per benchmark:

    benchmarks/.venv-procrastinate/bin/python -P benchmarks/procrastinate_side.py NAME \\
        --url URL --schema S --repeats 5 [--quick]

Procrastinate keeps its tables, types and functions in the schema ``S`` of the same
database durably uses: it is created here, Procrastinate's own schema SQL is applied in it
(``App.schema_manager.apply_schema``) by a connection whose ``search_path`` is ``S``, and
every connection of every process uses that ``search_path``; the runner drops the schema
afterwards. Its LISTEN/NOTIFY channels are per database, not per schema: a worker may
wake up for a job of another schema, finds nothing and goes back to waiting.

How it is run, as Procrastinate documents it: ``PsycopgConnector`` (psycopg 3 and its
pool), async tasks, a worker process per ``App.run_worker_async(concurrency=30)`` (its
documented knob for throughput: sub-workers of one process, each running a job while the
worker fetches the next), LISTEN/NOTIFY on (its default), and defers through ``Task.defer``
(sync, from a process that runs no worker) or ``Task.defer_async``. A worker's pool holds
up to 16 connections, a deferring process's up to 8 (the sizes of durably's App and
Client pools). Jobs are kept after they finish (its default, ``delete_jobs="never"``).

Progress goes to stderr; the last line on stdout is ``{"measurements": [...]}``. The helper
processes are this script again with a ``proc-*`` or ``sustained-*`` name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
from psycopg import sql

# Run as a script (python -P) in Procrastinate's venv: the shared helpers are found from
# the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.sidekit import (
    Child,
    Figures,
    Side,
    drains,
    latencies,
    measurement,
    percentile,
    produce,
    say,
    size,
    threaded_rates,
    timed_drain,
    wait_for,
    wait_for_eof,
)

SIDE = Side("procrastinate", "procrastinate", __file__)
QUEUE = "bench"
NOOP = "bench.queued_noop"
STAMP = "bench.queued_stamp"
SUSTAINED_QUEUE = "sustained"
SUSTAINED_JOB = "sustained.job"
CONCURRENCY = 30  # sub-workers per worker process
WORKER_POOL = 16  # connections of a worker process
CLIENT_POOL = 8  # connections of a deferring process
WORKER_COUNTS = (1, 4)
MAX_IN_FLIGHT = 512  # defers waiting for their answer in the sustained producer

# Every process defines the tasks in this (main) module; Procrastinate warns that a worker
# started elsewhere could not import them, which does not apply here.
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)


def make_app(url: str, schema: str, pool: int) -> procrastinate.App:
    """An App on ``schema`` (its ``search_path``) with the benchmark's tasks."""
    connector = procrastinate.PsycopgConnector(
        conninfo=url, kwargs={"options": f"-c search_path={schema}"}, min_size=1, max_size=pool
    )
    app = procrastinate.App(connector=connector)

    @app.task(name=NOOP, queue=QUEUE)
    async def queued_noop() -> None:
        return None

    @app.task(name=STAMP, queue=QUEUE, pass_context=True)
    async def queued_stamp(context: procrastinate.JobContext) -> None:
        stamp = time.time()  # the first line: when the worker started it
        # Jobs keep no result: the stamp goes to the parent on this process's stdout.
        say(json.dumps({"job": context.job.id, "stamp": stamp}))

    @app.task(name=SUSTAINED_JOB, queue=SUSTAINED_QUEUE)
    async def sustained_job(n: int) -> int:
        await asyncio.sleep(0.001)  # the job's work
        return n

    return app


def create_schema(url: str, schema: str) -> None:
    """Create ``schema`` and apply Procrastinate's schema SQL in it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    with make_app(url, schema, 1).open() as app:
        app.schema_manager.apply_schema()


def worker_child(url: str, schema: str) -> Child:
    """A worker process on the benchmark queue (``proc-worker``), launched on ``go``."""
    return SIDE.child(
        "proc-worker", "--url", url, "--schema", schema, "--concurrency", str(CONCURRENCY)
    )


async def _stdin(fn: Callable[..., None], *args: str) -> None:
    """Wait for stdin (``wait_for``, ``wait_for_eof``) without blocking the event loop."""
    with suppress(SystemExit):  # wait_for exits when stdin closes first
        await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# ---------------------------------------------------------------------- benchmarks


def defer_up_front(url: str, schema: str, n: int) -> float:
    """Defer ``n`` no-op jobs with no worker running; defers/s."""
    app = make_app(url, schema, CLIENT_POOL)

    async def defer_all() -> float:
        async with app.open_async():
            task = app.tasks[NOOP]
            started = time.perf_counter()
            for first in range(0, n, 1000):
                await asyncio.gather(*(task.defer_async() for _ in range(min(1000, n - first))))
            return n / (time.perf_counter() - started)

    return asyncio.run(defer_all())


def drain(url: str, schema: str, n: int, workers: int) -> tuple[float, float]:
    """``workers`` worker processes on ``n`` deferred jobs (``sidekit.timed_drain``), the
    times read from Procrastinate's own event table (``started`` and ``succeeded`` events,
    stamped by the database)."""
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM {s}.procrastinate_jobs WHERE status = 'succeeded'),"
        " (SELECT extract(epoch FROM min(at)) FROM {s}.procrastinate_events"
        "  WHERE type = 'started'),"
        " (SELECT extract(epoch FROM max(at)) FROM {s}.procrastinate_events"
        "  WHERE type = 'succeeded')"
    ).format(s=sql.Identifier(schema))

    def progress(conn: psycopg.Connection[Any]) -> tuple[int, float, float]:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0]), float(row[1] or 0), float(row[2] or 0)

    children = [worker_child(url, schema) for _ in range(workers)]
    return timed_drain(children, url, n, progress)


@SIDE.bench("queue-throughput")
def queue_throughput(args: argparse.Namespace) -> Figures:
    n = size(args, 10_000, 1_000)

    def one(schema: str, workers: int) -> tuple[float, float, float]:
        create_schema(args.url, schema)
        return (defer_up_front(args.url, schema, n), *drain(args.url, schema, n, workers))

    rates, totals, defer_rates = drains(args, SIDE.log, one, WORKER_COUNTS)
    out: Figures = []
    for workers in WORKER_COUNTS:
        plural = "es" if workers > 1 else ""
        out += [
            measurement(f"queue.w{workers}.wf_per_s",
                        f"Procrastinate drain, {workers} worker process{plural}", "/s",
                        rates[workers],
                        note=f"async no-op task, concurrency={CONCURRENCY}; first 'started' to "
                        "last 'succeeded' event"),
            measurement(f"queue.w{workers}.total_s",
                        f"Procrastinate, {workers} worker process{plural}: total", "s",
                        totals[workers]),
        ]  # fmt: skip
    out.append(
        measurement(
            "queue.enqueue_up_front", "Procrastinate defer up front", "/s", defer_rates,
            note="Task.defer_async, asyncio.gather of 1,000", comparable=False,
        )
    )  # fmt: skip
    return out


@SIDE.bench("enqueue-latency")
def enqueue_latency(args: argparse.Namespace) -> Figures:
    n = size(args, 200, 40)
    gap = 0.02
    samples: dict[str, list[list[float]]] = {"app": [], "client": []}
    create_schema(args.url, args.schema)
    worker = worker_child(args.url, args.schema)
    # The sync deferrer (a process that runs no worker, like durably's Client) and the
    # async one (Task.defer_async on an App opened on an event loop, like durably's App).
    sync_app = make_app(args.url, args.schema, CLIENT_POOL).open()
    async_app = make_app(args.url, args.schema, CLIENT_POOL)
    try:
        with asyncio.Runner() as runner:
            runner.run(async_app.connector.open_async())
            worker.expect("ready")
            worker.send("go")
            worker.expect("launched")
            time.sleep(0.5)  # its LISTEN connection is up

            def started(job_id: int) -> float:
                while True:
                    line = worker.json(timeout=30)
                    if line.get("job") == job_id:
                        return float(line["stamp"])

            async def defer_async() -> tuple[float, int]:
                t0 = time.time()
                return t0, await async_app.tasks[STAMP].defer_async()

            def by_app() -> float:
                t0, job_id = runner.run(defer_async())
                return started(job_id) - t0

            def by_client() -> float:
                t0 = time.time()
                job_id = sync_app.tasks[STAMP].defer()
                return started(job_id) - t0

            latencies(by_app, 10, gap)  # warm up both paths
            latencies(by_client, 10, gap)
            for _ in range(args.repeats):
                samples["app"].append(latencies(by_app, n, gap))
                samples["client"].append(latencies(by_client, n, gap))
                p50s = [percentile(samples[who][-1], 50) * 1000 for who in ("app", "client")]
                SIDE.log(f"p50 defer_async {p50s[0]:.1f} ms, defer {p50s[1]:.1f} ms")
            runner.run(async_app.connector.close_async())
    finally:
        worker.close()
        sync_app.close()
    how = {"app": "Task.defer_async", "client": "Task.defer (sync)"}
    out: Figures = []
    for who in ("app", "client"):
        for p in (50, 99):
            out.append(
                measurement(
                    f"enqueue.{who}.p{p}", f"Procrastinate defer -> start, {how[who]}: p{p}",
                    "ms", [percentile(r, p) * 1000 for r in samples[who]],
                    note=f"{how[who]}; LISTEN/NOTIFY wakes the worker" if p == 50 else "",
                )
            )  # fmt: skip
    return out


@SIDE.bench("client-enqueue")
def client_enqueue(args: argparse.Namespace) -> Figures:
    per_thread = {1: size(args, 1000, 200), 8: size(args, 250, 50)}
    create_schema(args.url, args.schema)
    out: Figures = []
    with make_app(args.url, args.schema, CLIENT_POOL).open() as app:
        task = app.tasks[NOOP]
        for threads, count in per_thread.items():
            rates = threaded_rates(task.defer, threads, count, args.repeats)
            out.append(
                measurement(f"client.enqueue.t{threads}",
                            f"Procrastinate Task.defer, {threads} thread{'s' * (threads > 1)}",
                            "/s", rates, note=f"sync, {CLIENT_POOL} connections")
            )  # fmt: skip
    return out


# ---------------------------------------------------------------------- helper processes


def _run_worker(args: argparse.Namespace, queue: str, on_go: bool) -> None:
    """Run a worker on ``queue`` until stdin closes: launched on ``go`` (``on_go``), else
    at once."""
    app = make_app(args.url, args.schema, WORKER_POOL)

    async def run() -> None:
        async with app.open_async():
            if on_go:
                say("ready")
                await _stdin(wait_for, "go")
            worker = asyncio.create_task(
                app.run_worker_async(
                    queues=[queue], concurrency=args.concurrency or CONCURRENCY,
                    install_signal_handlers=False,
                )
            )  # fmt: skip
            say("launched" if on_go else "ready")
            await _stdin(wait_for_eof)
            worker.cancel()  # Procrastinate stops gracefully: running jobs finish
            with suppress(asyncio.CancelledError):
                await worker

    asyncio.run(run())


@SIDE.proc("proc-worker")
def proc_worker(args: argparse.Namespace) -> None:
    """A worker on the benchmark queue, launched on ``go``."""
    _run_worker(args, QUEUE, on_go=True)


# ---------------------------------------------------------------------- sustained load
# The processes of ``benchmarks.sustained --engine procrastinate``.


@SIDE.proc("sustained-schema")
def sustained_schema(args: argparse.Namespace) -> None:
    """Create the schema and apply Procrastinate's in it, before any process starts."""
    create_schema(args.url, args.schema)


@SIDE.proc("sustained-worker")
def sustained_worker(args: argparse.Namespace) -> None:
    """A worker on the sustained queue, running at once, until stdin closes."""
    _run_worker(args, SUSTAINED_QUEUE, on_go=False)


@SIDE.proc("sustained-producer")
def sustained_producer(args: argparse.Namespace) -> None:
    """Defer ``--rate`` jobs a second for ``--duration`` seconds (``sidekit.produce``),
    each with its sequence number as argument ``n``, so the parent can check that every
    acknowledged defer ran. A defer that failed is sent again; Procrastinate has no
    idempotent defer, so one whose answer was lost could run twice (the check counts
    distinct numbers)."""
    app = make_app(args.url, args.schema, CLIENT_POOL)

    async def run() -> None:
        async with app.open_async():
            task = app.tasks[SUSTAINED_JOB]

            async def send(seq: int) -> None:
                while True:
                    try:
                        await task.defer_async(n=seq)
                        return
                    except procrastinate.exceptions.ConnectorException:
                        await asyncio.sleep(0.2)  # the database is away: again

            say("ready")
            await _stdin(wait_for, "go")
            await produce(args.rate, args.duration, send, MAX_IN_FLIGHT)

    asyncio.run(run())


if __name__ == "__main__":
    sys.exit(SIDE.main())
