"""A worker of the failover tests: ``python tests/failoverprocs/worker.py URL SCHEMA LEDGER``.

It serves the queue ``fo`` with the workflow ``chain``: ``STEPS`` steps, each of which
appends one line "<workflow> <step> <pid> <start time>" to the ledger file (a file, not
a table: what the database loses in a failover, the ledger keeps) and then returns a
value known in advance. The workflow returns their sum, ``expected(n)``. The worker
prints "ready" once launched and runs until stdin closes.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import durably

STEPS = 4
STEP_SECONDS = 0.12


def expected(n: int) -> int:
    """What ``chain(n)`` returns."""
    return sum(n * 10 + step for step in range(1, STEPS + 1))


def build(url: str, schema: str, ledger: str) -> durably.App:
    app = durably.App(url, schema=schema, lease=4.0, poll_interval=0.5, park_after=1.0)
    app.queue("fo", worker_concurrency=4)

    @app.step()
    def link(workflow_id: str, n: int, step: int) -> int:
        started = time.time()
        line = f"{workflow_id} {step} {os.getpid()} {started:.6f}\n"
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write with O_APPEND: lines never interleave
        finally:
            os.close(fd)
        time.sleep(STEP_SECONDS)
        return n * 10 + step

    @app.workflow(name="chain")
    def chain(n: int) -> int:
        workflow_id = durably.workflow_id()
        return sum(link(workflow_id, n, step) for step in range(1, STEPS + 1))

    return app


def main() -> None:
    url, schema, ledger = sys.argv[1:4]
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    app = build(url, schema, ledger)
    with app:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.read()  # until the test closes it


if __name__ == "__main__":
    main()
