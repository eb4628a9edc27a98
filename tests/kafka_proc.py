"""A consumer and worker process of the Kafka crash test (run by tests/test_kafka.py).

    python tests/kafka_proc.py URL SCHEMA BOOTSTRAP GROUP TOPIC --executor-id ID
        [--crash-after-batches N] [--work-seconds S] [--lease L]

It polls the topic and runs the workflows of the group's queue (tests/kafka_app.py,
``transactional_consumer``: a transaction step records the message, then a plain step
works for S seconds). With ``--crash-after-batches N`` it SIGKILLs itself right after its
N-th batch is recorded and before that batch's offsets are committed, once at least one
of its own workflows is PENDING with its transaction step committed: the consumer is
mid-batch and the worker mid-workflow. Prints ``started``; the consumer's log lines
(assignments) go to stdout too.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

import durably
from kafka_app import transactional_consumer

# How long the crash waits for a workflow caught between its two steps.
CATCH_DEADLINE = 30.0


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "schema", "bootstrap", "group", "topic"):
        parser.add_argument(name)
    parser.add_argument("--executor-id", required=True)
    parser.add_argument("--crash-after-batches", type=int, default=0)
    parser.add_argument("--work-seconds", type=float, default=0.2)
    parser.add_argument("--lease", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s %(message)s")
    app = durably.App(args.url, schema=args.schema, executor_id=args.executor_id, lease=args.lease)
    consumer = transactional_consumer(
        app, args.schema, args.executor_id, args.bootstrap, args.group, args.topic,
        args.work_seconds, batch_size=25,
    )  # fmt: skip
    if args.crash_after_batches:
        recorded = consumer._note_recorded
        batches = 0

        def then_crash(batch: Any) -> None:
            nonlocal batches
            batches += 1
            if batches >= args.crash_after_batches:
                caught = _wait_for_caught_workflow(args.url, args.schema, args.executor_id)
                print(f"crashing after batch {batches}, {caught} workflow(s) caught", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            recorded(batch)

        consumer._note_recorded = then_crash  # type: ignore[method-assign]
    app.launch()  # serves the consumer's queue: this process runs workflows too
    consumer.start()
    print("started", flush=True)
    threading.Event().wait()  # until killed


def _wait_for_caught_workflow(url: str, schema: str, executor: str) -> int:
    """Wait (a bounded time) until some workflow of this executor is PENDING with its
    transaction step's row committed; how many are."""
    query = sql.SQL(
        "SELECT count(*) FROM {s}.workflows w WHERE w.executor_id = %s AND w.status = 'PENDING' "
        "AND EXISTS (SELECT 1 FROM {s}.kafka_tx_runs r WHERE r.workflow_id = w.id)"
    ).format(s=sql.Identifier(schema))
    deadline = time.monotonic() + CATCH_DEADLINE
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(query, (executor,)).fetchone()
            caught = int(row[0]) if row else 0
            if caught or time.monotonic() > deadline:
                return caught
            time.sleep(0.005)


if __name__ == "__main__":
    main()
