"""The DBOS Transact side of durably's benchmarks: the same figures, measured the same way,
on the same PostgreSQL in the same run.

It runs in its own virtual environment (``benchmarks/.venv-dbos``, made by
``benchmarks.dbos_venv``; DBOS is never a dependency of durably), one process per benchmark:

    benchmarks/.venv-dbos/bin/python -P benchmarks/dbos_side.py NAME --url URL --schema S \\
        --repeats 5 [--quick]

DBOS keeps its system tables in the schema ``S`` (``dbos_system_schema``) of the same
database durably uses; the runner drops it afterwards. Progress goes to stderr; the last
line on stdout is ``{"measurements": [...]}`` with one sample per repeat, under the same
keys as durably's figures. The helper processes (queue workers, a crashing and a
recovering executor, a sleeper) are this script again with a ``proc-*`` name. The frame
(command line, registry, child processes, timing helpers) is ``benchmarks/sidekit.py``.

Each workflow is defined at module level, with the same names in every process, and every
process uses ``application_version="bench"`` so that a recovering process may take over
what another one left.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import psycopg
from dbos import DBOS, DBOSClient

# Run as a script (python -P) in DBOS's venv: the shared helpers are found from the root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.sidekit import (
    Side,
    drains,
    fresh_schema,
    latencies,
    measurement,
    median_ms,
    per_call,
    percentile,
    proc_status,
    say,
    size,
    threaded_rates,
    timed_drain,
    wait_for,
    wait_for_eof,
    wait_until,
)

SIDE = Side("dbos", "dbos", __file__)
bench, log = SIDE.bench, SIDE.log
QUEUE = "bench"
APP = "bench"
VERSION = "bench"
BLOCK = os.environ.get("DBOS_BENCH_BLOCK") == "1"


# ---------------------------------------------------------------------- workflows


@DBOS.step(name="bench.noop")
def noop() -> None:
    return None


@DBOS.workflow(name="bench.steps")
def steps(n: int) -> int:
    for _ in range(n):
        noop()
    return n


@DBOS.step(name="bench.anoop")
async def anoop() -> None:
    return None


@DBOS.workflow(name="bench.asteps")
async def asteps(n: int) -> int:
    for _ in range(n):
        await anoop()
    return n


@DBOS.workflow(name="bench.queued_noop")
def queued_noop() -> None:
    return None


@DBOS.workflow(name="bench.queued_stamp")
def queued_stamp() -> float:
    return time.time()  # the first line: when the worker started it


@DBOS.workflow(name="bench.sleeper")
def sleeper(i: int) -> int:
    DBOS.sleep(3600)
    return i


@DBOS.step(name="bench.rec_first")
async def rec_first(i: int) -> int:
    return i


@DBOS.step(name="bench.rec_gate")
async def rec_gate(i: int) -> int:
    if BLOCK:
        await asyncio.sleep(3600)
    return i


@DBOS.workflow(name="bench.recover")
async def recover(i: int) -> int:
    await rec_first(i)
    await rec_gate(i)
    return await rec_first(i)


# ---------------------------------------------------------------------- helpers


def make_dbos(url: str, schema: str, executor_id: str | None = None) -> None:
    config: dict[str, Any] = {
        "name": APP,
        "system_database_url": url,
        "dbos_system_schema": schema,
        "application_version": VERSION,
        "log_level": "WARNING",
    }
    if executor_id is not None:
        config["executor_id"] = executor_id
    DBOS(config=config)  # type: ignore[arg-type]


def client(url: str, schema: str) -> DBOSClient:
    return DBOSClient(system_database_url=url, dbos_system_schema=schema, application_name=APP)


# ---------------------------------------------------------------------- benchmarks


def latency_figures(flavour: str, samples: dict[int, list[float]], n: int) -> list[dict[str, Any]]:
    out = [
        measurement(
            f"{flavour}.seq.{k}",
            f"DBOS {flavour} workflow, {k} no-op steps",
            "ms",
            samples[k],
            note=f"median of {n} per repeat",
        )
        for k in (0, 1, 10)
    ]
    per_step = [(t10 - t0) / 10 for t10, t0 in zip(samples[10], samples[0], strict=True)]
    out.append(measurement(f"{flavour}.seq.per_step", f"DBOS {flavour} per step", "ms", per_step))
    return out


@bench("sequential-sync")
def sequential_sync(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = size(args, 150, 20)
    samples: dict[int, list[float]] = {0: [], 1: [], 10: []}
    make_dbos(args.url, args.schema)
    DBOS.launch()
    try:
        for k in samples:
            per_call(lambda k=k: steps(k), 30)
        for _ in range(args.repeats):
            for k in samples:
                samples[k].append(median_ms(per_call(lambda k=k: steps(k), n)))
    finally:
        DBOS.destroy()
    return latency_figures("sync", samples, n)


@bench("transaction-step")
def transaction_step(args: argparse.Namespace) -> list[dict[str, Any]]:
    """DBOS 3.4's transaction step (a SQLAlchemy datasource's ``@ds.transaction()``,
    default isolation SERIALIZABLE) inserting one row, against a plain no-op step."""
    from dbos import SQLAlchemyDatasource
    from sqlalchemy import text

    n = size(args, 100, 20)
    table = f'"{args.schema}_rows".rows'
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{args.schema}_rows"')
        conn.execute(
            f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "payload jsonb NOT NULL)"
        )
    make_dbos(args.url, args.schema)
    ds = SQLAlchemyDatasource.create(args.url, schema=f"{args.schema}_ds")
    insert = text(f"INSERT INTO {table} (payload) VALUES ('null'::jsonb)")

    @ds.transaction(name="bench.tx_insert")
    def tx_insert() -> None:
        ds.sql_session().execute(insert)

    @ds.transaction(name="bench.tx_insert_rc", isolation_level="READ COMMITTED")
    def tx_insert_rc() -> None:
        ds.sql_session().execute(insert)

    @DBOS.workflow(name="bench.mixed")
    def mixed(kind: str, k: int) -> int:
        fn = {"plain": noop, "tx": tx_insert, "tx_rc": tx_insert_rc}.get(kind)
        for _ in range(k if fn is not None else 0):
            fn()  # type: ignore[misc]
        return k

    DBOS.launch()
    samples: dict[str, list[float]] = {"zero": [], "plain": [], "tx": [], "tx_rc": []}
    try:
        runs = {
            "zero": lambda: mixed("zero", 0),
            "plain": lambda: mixed("plain", 10),
            "tx": lambda: mixed("tx", 10),
            "tx_rc": lambda: mixed("tx_rc", 10),
        }
        for run in runs.values():
            per_call(run, 20)
        for _ in range(args.repeats):
            for key, run in runs.items():
                samples[key].append(median_ms(per_call(run, n)))
    finally:
        DBOS.destroy()
        with psycopg.connect(args.url, autocommit=True) as conn:
            for suffix in ("rows", "ds"):
                conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}_{suffix}" CASCADE')

    def per_step(key: str) -> list[float]:
        return [(t - z) / 10 for t, z in zip(samples[key], samples["zero"], strict=True)]

    note = f"(t10 - t0) / 10, median of {n} workflows per repeat"
    return [
        measurement("tx.per_step", "DBOS transaction step, 1 row (serializable)", "ms",
                    per_step("tx"), note=note),
        measurement("tx.per_step_rc", "DBOS transaction step, 1 row (read committed)", "ms",
                    per_step("tx_rc"), note=note),
        measurement("tx.plain_per_step", "DBOS plain no-op step", "ms", per_step("plain"),
                    note=note),
    ]  # fmt: skip


@bench("sequential-async")
def sequential_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = size(args, 150, 20)
    samples: dict[int, list[float]] = {0: [], 1: [], 10: []}
    make_dbos(args.url, args.schema)
    DBOS.launch()

    async def measure() -> None:
        async def timed(k: int) -> float:
            start = time.perf_counter()
            await asteps(k)
            return time.perf_counter() - start

        for k in samples:
            for _ in range(30):
                await timed(k)
        for _ in range(args.repeats):
            for k in samples:
                samples[k].append(median_ms([await timed(k) for _ in range(n)]))

    try:
        asyncio.run(measure())
    finally:
        DBOS.destroy()
    return latency_figures("async", samples, n)


def throughput_figures(key: str, rates: list[float], note: str) -> list[dict[str, Any]]:
    return [
        measurement(f"{key}.wf_per_s", f"DBOS {key}: workflows/s", "/s", rates, note=note),
        measurement(f"{key}.steps_per_s", f"DBOS {key}: steps/s", "/s", [r * 10 for r in rates]),
    ]


@bench("throughput-sync")
def throughput_sync(args: argparse.Namespace) -> list[dict[str, Any]]:
    concurrency, rounds = 50, size(args, 10, 3)
    make_dbos(args.url, args.schema)
    DBOS.launch()
    rates: list[float] = []
    try:
        with ThreadPoolExecutor(concurrency) as pool:

            def one_round() -> None:
                futures = [pool.submit(steps, 10) for _ in range(concurrency)]
                wait(futures)
                for f in futures:
                    f.result()

            for _ in range(3):
                one_round()
            for _ in range(args.repeats):
                start = time.perf_counter()
                for _ in range(rounds):
                    one_round()
                rates.append(rounds * concurrency / (time.perf_counter() - start))
    finally:
        DBOS.destroy()
    return throughput_figures("sync.x50", rates, f"{rounds} rounds of {concurrency} per repeat")


@bench("throughput-async")
def throughput_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    make_dbos(args.url, args.schema)
    DBOS.launch()
    try:
        with asyncio.Runner() as runner:
            for concurrency, rounds in ((50, size(args, 10, 3)), (1000, 1)):

                def one_round(concurrency: int = concurrency) -> None:
                    async def gather() -> None:
                        await asyncio.gather(*(asteps(10) for _ in range(concurrency)))

                    runner.run(gather())

                # A round of 1,000 takes about a minute on DBOS: the 50s warmed it up, and
                # two repeats are enough to see the spread.
                if concurrency <= 50:
                    for _ in range(3):
                        one_round()
                repeats = args.repeats if concurrency <= 50 else min(args.repeats, 2)
                rates: list[float] = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    for _ in range(rounds):
                        one_round()
                    rates.append(rounds * concurrency / (time.perf_counter() - start))
                    log(f"gather of {concurrency}: {rates[-1]:,.0f} workflows/s")
                out += throughput_figures(
                    f"async.x{concurrency}",
                    rates,
                    f"{rounds} round{'s' * (rounds > 1)} of {concurrency} per repeat"
                    + ("" if concurrency <= 50 else f", {repeats} repeats"),
                )
    finally:
        DBOS.destroy()
    return out


def enqueue_many(url: str, schema: str, n: int, threads: int = 8) -> float:
    """Enqueue ``n`` no-op workflows with DBOSClient from ``threads`` threads; enqueues/s."""
    c = client(url, schema)
    try:
        options = {"workflow_name": "bench.queued_noop", "queue_name": QUEUE}

        def some(count: int) -> None:
            for _ in range(count):
                c.enqueue(options)  # type: ignore[arg-type]

        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(some, [n // threads + (i < n % threads) for i in range(threads)]))
        return n / (time.perf_counter() - start)
    finally:
        c.destroy()


def prepare_queue(url: str, schema: str) -> None:
    """Create DBOS's tables in ``schema`` and register the queue (defaults: no limits,
    polling every 1 s)."""
    DBOS.migrate(url, schema=schema)
    c = client(url, schema)
    try:
        c.register_queue(QUEUE)
    finally:
        c.destroy()


def drain(url: str, schema: str, n: int, workers: int) -> tuple[float, float]:
    """``workers`` worker processes on ``n`` queued workflows (``sidekit.timed_drain``)."""
    sql = (
        "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
        "min(started_at_epoch_ms), max(completed_at) "
        f'FROM "{schema}".workflow_status WHERE queue_name = %s'
    )

    def progress(conn: psycopg.Connection[Any]) -> tuple[int, float, float]:
        row = conn.execute(sql, (QUEUE,)).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0]), (row[1] or 0) / 1000.0, (row[2] or 0) / 1000.0

    children = [
        SIDE.child("proc-worker", "--url", url, "--schema", schema, "--executor-id", f"worker-{i}")
        for i in range(workers)
    ]
    return timed_drain(children, url, n, progress)


@bench("queue-throughput")
def queue_throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = size(args, 10_000, 1_000)

    def one(schema: str, workers: int) -> tuple[float, float, float]:
        prepare_queue(args.url, schema)
        return (enqueue_many(args.url, schema, n), *drain(args.url, schema, n, workers))

    rates, totals, enqueue_rates = drains(args, log, one, (1, 4))
    out: list[dict[str, Any]] = []
    for workers in (1, 4):
        out += [
            measurement(f"queue.w{workers}.wf_per_s", f"DBOS queue drain, {workers} workers",
                        "/s", rates[workers], note="default queue: no limits, polling every 1 s"),
            measurement(f"queue.w{workers}.total_s", f"DBOS queue, {workers} workers: total",
                        "s", totals[workers]),
        ]  # fmt: skip
    out.append(
        measurement(
            "queue.enqueue_up_front",
            "DBOS enqueue up front",
            "/s",
            enqueue_rates,
            note="DBOSClient.enqueue from 8 threads",
        )
    )
    return out


@bench("enqueue-latency")
def enqueue_latency(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = size(args, 25, 6)
    gap = 1.0  # the polling period: enqueues arrive at a random phase of the worker's poll
    repeats = min(args.repeats, 2)
    samples: dict[str, list[list[float]]] = {"app": [], "client": []}
    prepare_queue(args.url, args.schema)
    make_dbos(args.url, args.schema, executor_id="enqueuer")
    DBOS.listen_queues([])  # the enqueuer runs nothing: the worker process does
    DBOS.launch()
    c = client(args.url, args.schema)
    worker = SIDE.child("proc-worker", "--url", args.url, "--schema", args.schema,
                        "--executor-id", "worker")  # fmt: skip
    try:
        worker.expect("ready")
        worker.send("go")
        worker.expect("launched")
        time.sleep(1.0)

        def by_app() -> float:
            t0 = time.time()
            handle = DBOS.enqueue_workflow(QUEUE, queued_stamp)
            return float(handle.get_result(polling_interval_sec=0.01)) - t0

        def by_client() -> float:
            t0 = time.time()
            handle = c.enqueue({"workflow_name": "bench.queued_stamp", "queue_name": QUEUE})
            return float(handle.get_result(polling_interval_sec=0.01)) - t0

        latencies(by_app, 2, gap)
        latencies(by_client, 2, gap)
        for _ in range(repeats):
            samples["app"].append(latencies(by_app, n, gap))
            samples["client"].append(latencies(by_client, n, gap))
            log(f"p50 app {percentile(samples['app'][-1], 50) * 1000:.0f} ms, "
                f"client {percentile(samples['client'][-1], 50) * 1000:.0f} ms")  # fmt: skip
    finally:
        worker.close()
        c.destroy()
        DBOS.destroy()
    out = []
    for who in ("app", "client"):
        for p in (50, 99):
            out.append(
                measurement(
                    f"enqueue.{who}.p{p}", f"DBOS enqueue -> start, {who}: p{p}", "ms",
                    [percentile(r, p) * 1000 for r in samples[who]],
                    note=f"{n} per repeat, {repeats} repeats, random 0-{gap:g} s gaps",
                )
            )  # fmt: skip
    return out


@bench("client-enqueue")
def client_enqueue(args: argparse.Namespace) -> list[dict[str, Any]]:
    per_thread = {1: size(args, 1000, 200), 8: size(args, 250, 50)}
    prepare_queue(args.url, args.schema)
    c = client(args.url, args.schema)
    out = []
    options = {"workflow_name": "bench.queued_noop", "queue_name": QUEUE}
    try:
        for threads, count in per_thread.items():
            rates = threaded_rates(
                lambda: c.enqueue(options),  # type: ignore[arg-type]
                threads, count, args.repeats,
            )  # fmt: skip
            out.append(
                measurement(f"client.enqueue.t{threads}", f"DBOSClient.enqueue, {threads} threads",
                            "/s", rates, note=f"{threads * count:,} per repeat")
            )  # fmt: skip
    finally:
        c.destroy()
    return out


@bench("sleeping")
def sleeping(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = size(args, 2_000, 500)
    child = SIDE.child("proc-sleeper", "--url", args.url, "--schema", args.schema,
                       "--count", str(n))  # fmt: skip
    try:
        child.expect("ready")
        child.send("go")
        r = child.json(timeout=1800)
    finally:
        child.kill()
    note = f"capped at {n:,}: DBOS holds one thread per sleeping sync workflow"
    return [
        measurement("sleep.start_rate", f"DBOS: start {n:,} sleeping", "/s",
                    [n / r["all_sleeping_s"]], note=note),
        measurement("sleep.threads", f"DBOS: OS threads, {n:,} sleeping", "threads",
                    [r["threads"]], note=note, comparable=False),
        measurement("sleep.rss", f"DBOS: RSS, {n:,} sleeping", "MiB", [r["rss_mib"]],
                    note=f"{n:,} workflows; peak {r['peak_rss_mib']:.0f} MiB", comparable=False),
        measurement("sleep.rss_per_wf", "DBOS: RSS growth per sleeping workflow", "KiB",
                    [(r["rss_mib"] - r["base_rss_mib"]) * 1024 / n]),
    ]  # fmt: skip


@bench("recovery")
def recovery(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = size(args, 10_000, 1_000)
    seconds: list[float] = []
    rates: list[float] = []
    notes: list[str] = []
    # A repeat takes about 4 minutes at 10,000 (starting them, then recovering them): one
    # run at full size, two in a quick run.
    for _ in range(1 if n >= 5000 else min(args.repeats, 2)):
        with (
            fresh_schema(args.url, args.schema) as schema,
            psycopg.connect(args.url, autocommit=True) as conn,
        ):
            DBOS.migrate(args.url, schema=schema)
            executor = f"bench-recovery-{uuid.uuid4().hex[:8]}"
            common = ["--url", args.url, "--schema", schema, "--executor-id", executor]
            crasher = SIDE.child("proc-crasher", *common, "--count", str(n),
                                 env={"DBOS_BENCH_BLOCK": "1"})  # fmt: skip
            try:
                crasher.expect("ready")
                crasher.send("go")
                sql = (
                    f'SELECT count(*) FROM "{schema}".operation_outputs '
                    "WHERE function_name = 'bench.rec_first'"
                )

                def stuck(sql: str = sql) -> bool:
                    return int(conn.execute(sql).fetchone()[0]) >= n

                wait_until(stuck, 1800, f"{n} workflows past their first step", interval=0.2)
            finally:
                crasher.kill()
            recoverer = SIDE.child("proc-recoverer", *common)
            try:
                recoverer.expect("ready")
                recoverer.send("go")
                info = recoverer.json()
                sql = (
                    "SELECT count(*) FILTER (WHERE status NOT IN ('PENDING', 'ENQUEUED')), "
                    "count(*) FILTER (WHERE status = 'SUCCESS'), max(completed_at), "
                    f"max(recovery_attempts), avg(recovery_attempts) "
                    f'FROM "{schema}".workflow_status WHERE name = %s'
                )
                row: tuple[Any, ...] = ()

                def finished(sql: str = sql) -> bool:
                    nonlocal row
                    row = tuple(conn.execute(sql, ("bench.recover",)).fetchone())
                    return int(row[0]) >= n

                wait_until(finished, 1800, f"{n} recovered workflows", interval=0.1)
            finally:
                recoverer.close()
            _, succeeded, last_ms, attempts, mean_attempts = row
            seconds.append(last_ms / 1000.0 - info["launch_called"])
            rates.append(int(succeeded) / seconds[-1])
            notes.append(
                f"{succeeded} SUCCESS, recovery attempts mean {float(mean_attempts):.1f} "
                f"max {attempts}"
            )
            log(f"recovered {n:,} in {seconds[-1]:.1f} s ({notes[-1]})")
    return [
        measurement("recovery.wf_per_s", f"DBOS recovery of {n:,}", "/s", rates,
                    note="DBOS.launch() with the same executor ID to last SUCCESS"),
        measurement("recovery.seconds", f"DBOS recovery of {n:,}: seconds", "s", seconds,
                    note="; ".join(sorted(set(notes)))),
    ]  # fmt: skip


# ---------------------------------------------------------------------- helper processes


@SIDE.proc("proc-worker")
def proc_worker(args: argparse.Namespace) -> None:
    make_dbos(args.url, args.schema, executor_id=args.executor_id)
    say("ready")
    wait_for("go")
    DBOS.launch()
    say("launched")
    wait_for_eof()
    DBOS.destroy(workflow_completion_timeout_sec=5)


@SIDE.proc("proc-sleeper")
def proc_sleeper(args: argparse.Namespace) -> None:
    make_dbos(args.url, args.schema)
    DBOS.launch()
    gc.collect()
    base = proc_status()
    say("ready")
    wait_for("go")
    start = time.perf_counter()
    for i in range(args.count):
        DBOS.start_workflow(sleeper, i)
    sql = (
        f'SELECT count(*) FROM "{args.schema}".operation_outputs '
        "WHERE function_name = 'DBOS.sleep'"
    )
    with psycopg.connect(args.url, autocommit=True) as conn:
        wait_until(lambda: int(conn.execute(sql).fetchone()[0]) >= args.count, 1800, "sleepers")
    took = time.perf_counter() - start
    time.sleep(1.0)
    gc.collect()
    after = proc_status()
    say(json.dumps({
        "all_sleeping_s": took, "threads": after["threads"], "rss_mib": after["VmRSS"],
        "peak_rss_mib": after["VmHWM"], "base_rss_mib": base["VmRSS"],
    }))  # fmt: skip
    wait_for_eof()
    os._exit(0)


@SIDE.proc("proc-crasher")
def proc_crasher(args: argparse.Namespace) -> None:
    make_dbos(args.url, args.schema, executor_id=args.executor_id)
    DBOS.launch()
    say("ready")
    wait_for("go")

    async def start_all() -> None:
        for first in range(0, args.count, 500):
            chunk = range(first, min(args.count, first + 500))
            await asyncio.gather(*(DBOS.start_workflow_async(recover, i) for i in chunk))
        say("started")
        await asyncio.Event().wait()  # the workflows run on this loop until SIGKILL

    asyncio.run(start_all())


@SIDE.proc("proc-recoverer")
def proc_recoverer(args: argparse.Namespace) -> None:
    make_dbos(args.url, args.schema, executor_id=args.executor_id)
    say("ready")
    wait_for("go")
    launched = time.time()
    DBOS.launch()
    say(json.dumps({"launch_called": launched, "launch_returned": time.time()}))
    wait_for_eof()
    DBOS.destroy(workflow_completion_timeout_sec=5)


if __name__ == "__main__":
    sys.exit(SIDE.main())
