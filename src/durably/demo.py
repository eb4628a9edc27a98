"""``durably demo``: a workflow survives the SIGKILL of its process.

The demo runs a four-step order workflow in a worker process (``python -m durably.demo
worker ...``), watches the database until step 2 is recorded, kills the worker with
SIGKILL in the middle of step 3, and starts a new worker with the same executor ID. That
worker recovers the workflow at once: steps 1-2 are replayed from their records (not run
again) and the workflow finishes from step 3. Every step records the PID of the process
that ran it, so the final table shows, from the database, which process did what.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

import durably
from durably.embedded import DEFAULT_DIR

T = TypeVar("T")

STEPS = ("reserve_inventory", "charge_payment", "create_shipment", "send_confirmation")
"""The workflow's steps, in the order it calls them (step N is STEPS[N - 1])."""

KILL_AFTER = 2
"""The worker is killed once this many steps are recorded."""

WORKFLOW_NAME = "durably.demo.place_order"
PRICE_CENTS = 1999
APP_NAME = "durably-demo"

_STARTED = re.compile(r"^step (\d+)/\d+ (\w+): started")


# ---------------------------------------------------------------------------------------
# The workflow (runs in the worker processes)


def register(
    app: durably.App, step_seconds: float, main_order: str | None = None
) -> durably.Workflow[[str, str, int], Any]:
    """Declare the demo's workflow and steps on ``app``; return the workflow.

    Names are given explicitly: the worker runs this module as ``__main__``. Lines about
    orders other than ``main_order`` (left unfinished by an interrupted earlier demo, and
    finished now by this worker) start with that order's ID.
    """

    def tell(order_id: str, number: int, text: str) -> None:
        other = f"[{order_id}] " if order_id != main_order else ""
        print(f"{other}step {number}/{len(STEPS)} {STEPS[number - 1]}: {text}", flush=True)

    def work(order_id: str, number: int, detail: str) -> None:
        tell(order_id, number, f"started ({detail})")
        time.sleep(step_seconds)  # stands for a call to a slow external service

    def done(order_id: str, number: int, output: dict[str, Any]) -> dict[str, Any]:
        shown = json.dumps({k: v for k, v in output.items() if k != "pid"})
        tell(order_id, number, f"finished -> {shown}")
        return output

    @app.step(name="durably.demo.reserve_inventory")
    def reserve_inventory(order_id: str, sku: str, quantity: int) -> dict[str, Any]:
        work(order_id, 1, f"{quantity} x {sku}")
        return done(order_id, 1, {"reservation": f"RSV-{_tag(order_id, 1)}", "pid": os.getpid()})

    @app.step(name="durably.demo.charge_payment")
    def charge_payment(order_id: str, amount_cents: int) -> dict[str, Any]:
        work(order_id, 2, f"${amount_cents / 100:.2f}")
        output = {"charge": f"CH-{_tag(order_id, 2)}", "amount_cents": amount_cents}
        return done(order_id, 2, {**output, "pid": os.getpid()})

    @app.step(name="durably.demo.create_shipment")
    def create_shipment(order_id: str, reservation: str) -> dict[str, Any]:
        work(order_id, 3, f"for {reservation}")
        return done(order_id, 3, {"tracking": f"TRK-{_tag(order_id, 3)}", "pid": os.getpid()})

    @app.step(name="durably.demo.send_confirmation")
    def send_confirmation(order_id: str, tracking: str) -> dict[str, Any]:
        work(order_id, 4, f"email with {tracking}")
        return done(order_id, 4, {"email": f"MSG-{_tag(order_id, 4)}", "pid": os.getpid()})

    @app.workflow(name=WORKFLOW_NAME)
    def place_order(order_id: str, sku: str, quantity: int) -> Any:
        reservation = reserve_inventory(order_id, sku, quantity)
        charge = charge_payment(order_id, quantity * PRICE_CENTS)
        shipment = create_shipment(order_id, reservation["reservation"])
        confirmation = send_confirmation(order_id, shipment["tracking"])
        return {
            "order": order_id,
            "status": "confirmed",
            "charge": charge["charge"],
            "tracking": shipment["tracking"],
            "email": confirmation["email"],
        }

    return place_order


def _tag(order_id: str, number: int) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{order_id}/{number}").hex[:6].upper()


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
    handler.setFormatter(logging.Formatter("durably: %(message)s"))
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


# ---------------------------------------------------------------------------------------
# The demo driver (the ``durably demo`` process)


class DemoFailed(Exception):
    """The demo could not do what it shows; the message says what went wrong."""


@dataclass
class Worker:
    """A worker child process whose output is relayed, prefixed, to ours."""

    number: int
    proc: subprocess.Popen[str]
    out: TextIO
    started_steps: list[int] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def prefix(self) -> str:
        return f"[worker {self.number} pid {self.pid}]"

    def start_relay(self) -> None:
        self._reader = threading.Thread(
            target=self._relay, daemon=True, name=f"durably-demo-relay-{self.number}"
        )
        self._reader.start()

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            match = _STARTED.match(line)
            if match:
                self.started_steps.append(int(match.group(1)))
            print(f"{self.prefix} {line}", file=self.out, flush=True)

    def finish_relay(self, timeout: float = 5.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def stop(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.finish_relay()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


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

    def say(text: str = "") -> None:
        print(f"[demo] {text}" if text else "", file=stream, flush=True)

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
        command = [
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
            str(data_path),
            "--step-seconds",
            repr(step_seconds),
        ]

        def spawn() -> Worker:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                # Our own Ctrl-C reaches only us; the finally below stops the worker.
                start_new_session=True,
            )
            worker = Worker(len(workers) + 1, proc, stream)
            workers.append(worker)
            worker.start_relay()
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
    except (durably.DurablyError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
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


def poll(check: Callable[[], T | None], worker: Worker, *, deadline: float, waiting_for: str) -> T:
    """Call ``check`` until it returns a value; fail if ``worker`` exits or time runs out."""
    delay = 0.005
    while True:
        value = check()
        if value is not None:
            return value
        if worker.proc.poll() is not None:
            worker.finish_relay()
            raise DemoFailed(
                f"worker {worker.number} exited with status {worker.proc.returncode} while "
                f"waiting for {waiting_for}"
            )
        if time.monotonic() >= deadline:
            raise DemoFailed(f"timed out waiting for {waiting_for}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def workflow_status(app: durably.App, workflow_id: str) -> str:
    return str(app.handle(workflow_id).status())


def summarize(
    app: durably.App,
    workflow_id: str,
    first: Worker,
    second: Worker,
    done_before: int,
    say: Callable[[str], None],
) -> int:
    """Print the table of what ran where; return 0 if it is what durability promises."""
    infos = app.list_workflows(ids=[workflow_id])
    if not infos:
        raise DemoFailed(f"workflow {workflow_id} is missing from the database")
    info = infos[0]
    steps = app.list_steps(workflow_id)
    worker_of = {first.pid: "worker 1", second.pid: "worker 2"}

    rows = [("step", "name", "pid", "ran in", "recorded output")]
    recorded_pids: dict[int, int | None] = {}
    for step in steps:
        output = step.output if isinstance(step.output, dict) else {}
        pid = output.get("pid")
        recorded_pids[step.step] = pid if isinstance(pid, int) else None
        shown = {k: v for k, v in output.items() if k != "pid"} if output else step.output
        rows.append(
            (
                str(step.step),
                step.name.rsplit(".", 1)[-1],
                str(pid) if pid is not None else "-",
                worker_of.get(pid, "?") if isinstance(pid, int) else "-",
                json.dumps(shown) if step.error is None else f"error: {step.error}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]

    say("")
    say(f"workflow {workflow_id}: {info.status}")
    say("")
    for i, row in enumerate(rows):
        cells = [cell.ljust(widths[j]) for j, cell in enumerate(row[:4])]
        say("  " + "  ".join([*cells, row[4]]))
        if i == 0:
            say("  " + "  ".join(["-" * w for w in widths] + ["-" * 15]))
    say("")
    say(f"result: {json.dumps(info.output, sort_keys=True)}")

    problems: list[str] = []
    if info.status != durably.Status.SUCCESS:
        problems.append(f"the workflow ended {info.status}, not SUCCESS")
    if [s.name.rsplit(".", 1)[-1] for s in steps] != list(STEPS):
        problems.append(f"recorded steps are {[s.name for s in steps]}, expected {list(STEPS)}")
    rerun = sorted(set(second.started_steps) & set(range(1, done_before + 1)))
    if rerun:
        problems.append(f"worker 2 ran recorded step(s) {rerun} again")
    for number, pid in recorded_pids.items():
        expected = first.pid if number <= done_before else second.pid
        if pid != expected:
            problems.append(f"step {number} was recorded by pid {pid}, expected {expected}")
    if problems:
        for problem in problems:
            print(f"durably demo failed: {problem}", file=sys.stderr)
        return 1

    interrupted = [n for n in first.started_steps if n > done_before]
    say(
        f"steps 1-{done_before} ran once, in worker 1 (pid {first.pid}); they were not re-run: "
        f"worker 2 (pid {second.pid}) replayed their recorded outputs."
    )
    if interrupted:
        say(
            f"step {interrupted[0]} was interrupted by the kill before its checkpoint committed, "
            f"so worker 2 ran it again (a step is at-least-once; its record is exactly-once)."
        )
    say(f"steps {done_before + 1}-{len(STEPS)} ran in worker 2 (pid {second.pid}).")
    return 0


def redact(url: str) -> str:
    """The URL with its password hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<database url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        print(
            "usage: python -m durably.demo worker ... (run `durably demo` instead)", file=sys.stderr
        )
        sys.exit(2)
    sys.exit(worker_main(sys.argv[2:]))
