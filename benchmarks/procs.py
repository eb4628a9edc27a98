"""Child processes of the durably benchmarks: queue workers, a sleeper, a crashing and a
recovering executor. Each is started by the parent as ``python -m benchmarks.procs KIND
...`` and speaks a line protocol on stdin/stdout:

- it prints ``ready`` once it has imported everything and connected (so start-up costs
  stay out of the measurement),
- it waits for ``go`` on stdin, does its work, and prints one line of JSON when it has
  something to report,
- it stops when stdin closes (the parent ends it with SIGKILL when the test needs a
  crash).

The workflows live here, at module level, so the parent (enqueuer) and the children
register the same names.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import threading
import time
from typing import Any

import durably
from benchmarks.sidekit import proc_status, say, wait_for, wait_for_eof

QUEUE = "bench"
NOOP = "bench.queued_noop"
STAMP = "bench.queued_stamp"
SLEEPER = "bench.sleeper"
RECOVER = "bench.recover"


class QueueApp:
    """An app with the queue and the two queued workflows (a no-op, a start stamp)."""

    def __init__(self, url: str, schema: str, **kwargs: Any) -> None:
        self.app = app = durably.App(url, schema=schema, **kwargs)
        self.queue = app.queue(QUEUE)

        @app.workflow(name=NOOP)
        def queued_noop() -> None:
            return None

        @app.workflow(name=STAMP)
        def queued_stamp() -> float:
            return time.time()  # the first line: when the worker started it

        self.noop = queued_noop
        self.stamp = queued_stamp


# ---------------------------------------------------------------------- kinds


def queue_worker(args: argparse.Namespace) -> None:
    """Launch on ``go`` and run queued work until stdin closes."""
    app = QueueApp(args.url, args.schema).app
    _ = app.engine  # connect and migrate now, not inside the measurement
    say("ready")
    wait_for("go")
    app.launch()
    say("launched")
    wait_for_eof()
    app.shutdown(grace=5)


def sleeper(args: argparse.Namespace) -> None:
    """Start ``count`` sync workflows that each call durably.sleep(3600), from ``threads``
    threads calling wf.start() in a loop; report once all are parked."""
    import psycopg

    app = durably.App(args.url, schema=args.schema)

    @app.workflow(name=SLEEPER)
    def sleeping(i: int) -> int:
        durably.sleep(3600)
        return i

    app.launch()
    gc.collect()
    base = proc_status()
    say("ready")
    wait_for("go")
    count, threads = args.count, args.threads
    started = time.perf_counter()

    def start_some(first: int) -> None:
        for i in range(first, count, threads):
            sleeping.start(i)

    workers = [threading.Thread(target=start_some, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    calls_done = time.perf_counter() - started
    parked_sql = (
        f'SELECT count(*) FROM "{args.schema}".workflows '
        "WHERE status = 'PENDING' AND executor_id IS NULL AND wake_at IS NOT NULL"
    )
    with psycopg.connect(args.url, autocommit=True) as conn:
        while True:
            row = conn.execute(parked_sql).fetchone()
            if row is not None and row[0] >= count:
                break
            time.sleep(0.05)
    all_parked = time.perf_counter() - started
    time.sleep(1.0)  # let the threads that just parked go idle
    gc.collect()
    after = proc_status()
    say(json.dumps({
        "count": count, "start_calls_s": calls_done, "all_parked_s": all_parked,
        "threads": after.get("threads", 0.0), "python_threads": after["python_threads"],
        "rss_mib": after.get("VmRSS", 0.0), "peak_rss_mib": after.get("VmHWM", 0.0),
        "base_rss_mib": base.get("VmRSS", 0.0), "base_threads": base.get("threads", 0.0),
    }))  # fmt: skip
    wait_for_eof()
    os._exit(0)  # 100,000 timers: nothing to hand back, the schema is dropped


def recovery_app(args: argparse.Namespace, block: bool) -> tuple[durably.App, Any]:
    """Async workflows of three steps; the second blocks in the process that will crash."""
    app = durably.App(args.url, schema=args.schema, executor_id=args.executor_id)

    @app.step(name="bench.rec_first")
    async def first(i: int) -> int:
        return i

    @app.step(name="bench.rec_gate")
    async def gate(i: int) -> int:
        if block:
            await asyncio.sleep(3600)
        return i

    @app.workflow(name=RECOVER)
    async def recover(i: int) -> int:
        await first(i)
        await gate(i)
        return await first(i)

    return app, recover


def crasher(args: argparse.Namespace) -> None:
    """Start ``count`` workflows that block in their second step; wait to be killed."""
    app, recover = recovery_app(args, block=True)
    app.launch()
    say("ready")
    wait_for("go")

    async def start_all() -> None:
        for first in range(0, args.count, 500):
            chunk = range(first, min(args.count, first + 500))
            await asyncio.gather(*(recover.start_async(i) for i in chunk))

    asyncio.run(start_all())
    say("started")
    wait_for_eof()
    os._exit(0)


def recoverer(args: argparse.Namespace) -> None:
    """On ``go``: launch with the crashed executor's ID (recovery), then run until EOF,
    answering ``status`` with the process's threads and memory (peak RSS: VmHWM)."""
    app, _ = recovery_app(args, block=False)
    _ = app.engine
    say("ready")
    wait_for("go")
    launched = time.time()
    error = None
    try:
        app.launch()
    except Exception as exc:  # reported, not fatal: the parent counts what got recorded
        error = f"{type(exc).__name__}: {exc}"
    say(json.dumps({"launch_called": launched, "launch_returned": time.time(), "error": error}))
    for line in sys.stdin:  # until EOF; "status" asks for threads and memory now
        if line.strip() == "status":
            say(json.dumps(proc_status()))
    os._exit(0)


KINDS = {
    "queue-worker": queue_worker,
    "sleeper": sleeper,
    "crasher": crasher,
    "recoverer": recoverer,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.procs")
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--url", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--executor-id", default=None)
    args = p.parse_args(argv)
    KINDS[args.kind](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
