"""The worker process the demo spawns (``python -m durably.demo worker ...``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

import durably
from durably.demo.workflows import APP_NAME, register
from durably.embedded import DEFAULT_DIR


def command(
    *, workflow_id: str, executor_id: str, schema: str, data_dir: str, step_seconds: float
) -> list[str]:
    """The command line that starts a worker process with these settings."""
    return [
        sys.executable,
        "-m",
        "durably.demo",
        "worker",
        "--workflow-id",
        workflow_id,
        "--executor-id",
        executor_id,
        "--schema",
        schema,
        "--data-dir",
        data_dir,
        "--step-seconds",
        repr(step_seconds),
    ]


def worker_main(argv: Sequence[str] | None = None) -> int:
    """One worker process: launch the executor, then run (or attach to) the workflow.

    The database comes from ``$DURABLY_DATABASE_URL``, else the embedded server in
    ``--data-dir``. A worker launched with the executor ID of a dead one recovers that
    executor's unfinished workflows at once.
    """
    parser = argparse.ArgumentParser(prog="python -m durably.demo worker")
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--executor-id", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--data-dir", default=DEFAULT_DIR)
    parser.add_argument("--step-seconds", type=float, required=True)
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))  # each line is labelled already
    library_log = logging.getLogger("durably")
    library_log.addHandler(handler)
    library_log.setLevel(logging.INFO)

    app = durably.App(
        schema=args.schema, executor_id=args.executor_id, data_dir=args.data_dir, name=APP_NAME
    )
    place_order = register(app, args.step_seconds, args.workflow_id)
    _exit_with_parent(app)
    try:
        print(f"launching executor {args.executor_id}", flush=True)
        with app:  # launch recovers this executor's unfinished workflows at once
            # Starting an existing workflow ID attaches to it instead of running it twice.
            result = place_order.options(id=args.workflow_id)(args.workflow_id, "widget", 3)
            print(f"workflow {args.workflow_id} returned {json.dumps(result)}", flush=True)
    except durably.DurablyError as exc:
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


def _exit_with_parent(app: durably.App) -> None:
    """Leave no worker behind: exit at once if the ``durably demo`` process goes away.

    The app is shut down first, so that the embedded server stops if nobody else uses it.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        try:
            app.shutdown(grace=0)
        finally:
            os._exit(1)

    threading.Thread(target=watch, daemon=True, name="durably-demo-parent-watch").start()
