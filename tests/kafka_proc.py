"""A consumer process of the Kafka crash test (run by tests/test_kafka.py).

    python tests/kafka_proc.py URL SCHEMA BOOTSTRAP GROUP TOPIC [--crash-after-batches N]

It only polls and records (its app claims no queued work): the workflows run in the
test's process, which is never killed, so the count of runs per message measures what
the consumer did. With ``--crash-after-batches N`` it SIGKILLs itself right after its
N-th batch is recorded and before that batch's offsets are committed: the window where
a crash leaves recorded messages to be delivered again. Prints ``started``; the
consumer's log lines (assignments) go to stdout too.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

import durably
from kafka_app import Runs, counting_consumer


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "schema", "bootstrap", "group", "topic"):
        parser.add_argument(name)
    parser.add_argument("--crash-after-batches", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s %(message)s")
    app = durably.App(args.url, schema=args.schema)
    consumer = counting_consumer(
        app, Runs(args.url, args.schema), args.bootstrap, args.group, args.topic, batch_size=25
    )
    if args.crash_after_batches:
        recorded = consumer._note_recorded
        batches = 0

        def then_crash(batch: Any) -> None:
            nonlocal batches
            batches += 1
            if batches >= args.crash_after_batches:
                print(f"crashing after batch {batches}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            recorded(batch)

        consumer._note_recorded = then_crash  # type: ignore[method-assign]
    app.launch(queues=[])  # records only; the test's process runs the workflows
    consumer.start()
    print("started", flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
