"""Processes of the sustained-load benchmark (``benchmarks.sustained``): a queue worker and
a producer that enqueues at a fixed rate, each ``python -m benchmarks.sustained_proc KIND``.

The worker runs queued jobs of 1 ms of work until stdin closes. The producer enqueues
``--rate`` jobs a second with IDs of its own (``p<seq>``), with at most 512 waiting for
their answer (past that it falls behind, and says by how much), through every outage: an
enqueue that failed is sent again with the same ID (an ID that exists attaches instead
of starting twice); how many it sent and how many are still unacknowledged are printed
every second as a JSON line, so the parent can check that every acknowledged enqueue
ran.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import durably
from benchmarks.sidekit import produce

QUEUE = "sustained"
JOB = "sustained.job"
MAX_IN_FLIGHT = 512


def worker(url: str, schema: str) -> None:
    app = durably.App(url, schema=schema)
    app.queue(QUEUE)

    @app.workflow(name=JOB)
    def job(n: int) -> int:
        time.sleep(0.001)  # the job's work
        return n

    app.launch()
    print("ready", flush=True)
    for _ in sys.stdin:
        pass
    app.shutdown(grace=5)


def producer(url: str, schema: str, rate: float, duration: float) -> None:
    client = durably.Client(url, schema=schema)

    async def send(seq: int) -> None:
        while True:
            try:
                await client.enqueue_async(QUEUE, JOB, seq, id=f"p{seq}")
                return
            except durably.DurablyError:
                await asyncio.sleep(0.2)  # the database is away: the same ID again

    print("ready", flush=True)
    sys.stdin.readline()  # go
    asyncio.run(produce(rate, duration, send, MAX_IN_FLIGHT))
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["worker", "producer"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema", default="durably")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=0.0)
    args = parser.parse_args()
    if args.kind == "worker":
        worker(args.url, args.schema)
    else:
        producer(args.url, args.schema, args.rate, args.duration)


if __name__ == "__main__":
    main()
