"""The ``durably demo`` process: the story from the database's start to the verdict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

import durably
from durably.demo import worker as worker_process
from durably.demo.children import DemoFailed, Worker, poll
from durably.demo.narration import Narrator, summarize, workflow_status
from durably.demo.workflows import APP_NAME, STEPS, WORKFLOW_NAME
from durably.embedded import DEFAULT_DIR
from durably.store.redaction import redact

KILL_AFTER = 2
"""The worker is killed once this many steps are recorded."""


def run_demo(
    *,
    database_url: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    schema: str = "durably",
    step_seconds: float = 0.4,
    out: TextIO | None = None,
) -> int:
    """Run the demo; print as it goes; return the exit code (0 when all went as shown)."""
    stream = out if out is not None else sys.stdout
    say = Narrator(stream)

    if not 0.1 <= step_seconds <= 10:
        # Shorter steps could finish step 3 before the kill lands, which is not the story told.
        print("durably demo: --step-seconds must be between 0.1 and 10", file=sys.stderr)
        return 2
    url = database_url or os.environ.get("DURABLY_DATABASE_URL") or None
    data_path = Path(data_dir if data_dir is not None else DEFAULT_DIR).expanduser().resolve()
    app: durably.App | None = None
    workers: list[Worker] = []
    restore = _exit_cleanly_on_sigterm()
    try:
        app = durably.App(url, schema=schema, data_dir=data_path, name=APP_NAME)
        if url is None:
            say(f"starting the embedded PostgreSQL 18 in {data_path} ...")
        else:
            say(f"connecting to {redact(url)} ...")
        began = time.monotonic()
        app.engine  # noqa: B018 - connect (or start the embedded server) and create the schema
        say(f"database ready in {time.monotonic() - began:.1f}s (schema {schema!r})")

        workflow_id = f"order-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        executor_id = f"demo-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if url is None:
            env.pop("DURABLY_DATABASE_URL", None)
        else:
            env["DURABLY_DATABASE_URL"] = url  # not on the command line: it may hold a password
        command = worker_process.command(
            workflow_id=workflow_id,
            executor_id=executor_id,
            schema=schema,
            data_dir=str(data_path),
            step_seconds=step_seconds,
        )

        def spawn() -> Worker:
            worker = Worker.spawn(len(workers) + 1, command, env, stream)
            workers.append(worker)  # the finally below stops it
            return worker

        leftovers = app.list_workflows(status=durably.Status.PENDING, name=WORKFLOW_NAME)
        if leftovers:
            say(
                f"note: {len(leftovers)} demo workflow(s) left unfinished by an interrupted "
                f"earlier run will be finished by these workers too (their lines start with "
                f"their id)"
            )
        say(f"workflow {workflow_id}: {' -> '.join(STEPS)}")
        say()
        first = spawn()
        say(f"started worker 1 (pid {first.pid}, executor {executor_id})")

        def recorded() -> list[durably.StepInfo] | None:
            try:
                steps = app.list_steps(workflow_id)
            except durably.WorkflowNotFound:
                return None
            return steps if len(steps) >= KILL_AFTER else None

        before_kill = poll(
            recorded,
            first,
            deadline=time.monotonic() + 60,
            waiting_for=f"step {KILL_AFTER} to be recorded",
        )
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        first.finish_relay()
        done_before = len(before_kill)
        say()
        say(
            f"step {done_before} is recorded in the database: sent SIGKILL to worker 1 "
            f"(pid {first.pid})"
        )
        how = (
            "was killed by SIGKILL"
            if first.proc.returncode == -signal.SIGKILL
            else f"exited with status {first.proc.returncode}"
        )
        say(
            f"worker 1 {how}; the workflow is still {workflow_status(app, workflow_id)} "
            f"with steps 1-{done_before} recorded"
        )
        say("starting worker 2 with the same executor id: it recovers the workflow at once")
        say()

        second = spawn()
        try:
            second.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise DemoFailed("worker 2 did not finish the workflow within 60 s") from None
        second.finish_relay()
        if second.proc.returncode != 0:
            raise DemoFailed(f"worker 2 failed with exit status {second.proc.returncode}")

        return summarize(app, workflow_id, first, second, done_before, say)
    except DemoFailed as exc:
        print(f"durably demo failed: {exc}", file=sys.stderr)
        return 1
    except (durably.DurablyError, OSError, subprocess.SubprocessError) as exc:
        print(f"durably demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for worker in workers:
            worker.stop()
        if app is not None:
            app.shutdown(grace=5)
        restore()


def _exit_cleanly_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM and SIGHUP into SystemExit, so the cleanup in ``finally`` runs.

    Returns the function that puts the previous handlers back.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
