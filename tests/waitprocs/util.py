"""Shared helpers: polling with a deadline, in-process crashes, table snapshots, and
worker subprocesses that talk in JSON lines."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

import durably

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEADLINE = 10.0
# Tables whose content is the stored state of workflows (executors change with heartbeats).
STATE_TABLES = ("workflows", "operations", "messages", "events", "streams", "watchers")


class Crash(BaseException):
    """Stands for the process dying: not an error the workflow records."""


def crash_then_recover(
    make_app: Callable[..., durably.App],
    build: Callable[[durably.App], T],
    start: Callable[[T], Any],
    **app_kwargs: Any,
) -> tuple[durably.App, T]:
    """Run a workflow until it 'crashes', then recover it in a new app with the same
    executor ID (which claims its unfinished workflows at once on launch)."""
    executor = f"exec-{uuid.uuid4().hex[:6]}"
    first = make_app(executor_id=executor, **app_kwargs)
    built = build(first)
    with pytest.raises(Crash):
        start(built)
    first.shutdown(grace=0)
    second = make_app(executor_id=executor, **app_kwargs)
    rebuilt = build(second)
    second.launch()
    return second, rebuilt


def snapshot(db: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Every row of the state tables as text (any stored value compares), sorted."""
    return {
        table: [
            row[0] for row in db.execute(f"SELECT t::text FROM {table} t ORDER BY 1").fetchall()
        ]
        for table in STATE_TABLES
    }


def one(db: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    """The first column of the first row of ``query`` (None when there is no row)."""
    row = db.execute(query, params).fetchone()
    return None if row is None else row[0]


def workflow_row(db: psycopg.Connection[Any], workflow_id: str) -> dict[str, Any]:
    cur = db.execute("SELECT * FROM workflows WHERE id = %s", (workflow_id,))
    row = cur.fetchone()
    assert row is not None, f"no workflow {workflow_id!r}"
    return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def ops(db: psycopg.Connection[Any], workflow_id: str) -> list[tuple[Any, ...]]:
    """(step, name, kind, output) of every recorded operation of a workflow."""
    return db.execute(
        "SELECT step, name, kind, output FROM operations WHERE workflow_id = %s ORDER BY step",
        (workflow_id,),
    ).fetchall()


def slow_down_parking(db: psycopg.Connection[Any], wait_kind: str, seconds: float) -> None:
    """Fault injection (a trigger in the test's schema): the statement that parks a
    workflow waiting for ``wait_kind`` holds its row for ``seconds`` before it commits,
    which widens the window between its check "has what I wait for arrived?" and its
    commit (a real server, real statements: only the timing is stretched)."""
    db.execute(
        f"""
        CREATE FUNCTION slow_park() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.executor_id IS NULL AND OLD.executor_id IS NOT NULL
               AND NEW.wait_kind = '{wait_kind}' THEN
                PERFORM pg_sleep({seconds});
            END IF;
            RETURN NEW;
        END $$"""
    )
    db.execute(
        "CREATE TRIGGER slow_park BEFORE UPDATE ON workflows "
        "FOR EACH ROW EXECUTE FUNCTION slow_park()"
    )


def parking_in_progress(db: psycopg.Connection[Any], schema: str) -> bool:
    """Whether a statement on ``schema`` is inside the slow_park trigger's sleep."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE %s",
        (f"%{schema}%",),
    ).fetchone()
    return row is not None and row[0] > 0


def blocked_in(thread: threading.Thread, function: str, filename_end: str) -> bool:
    """Whether ``thread`` is currently inside ``function`` of a file ending so (it has
    reached a blocking wait)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == function and code.co_filename.endswith(filename_end):
            return True
        frame = frame.f_back
    return False


@contextmanager
def background(fn: Callable[[], T]) -> Iterator[tuple[threading.Thread, dict[str, Any]]]:
    """Run ``fn`` in a daemon thread; the dict gets "value" or "error" when it ends (the
    caller joins the thread with the deadline it needs)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield thread, box


class Proc:
    """A Python subprocess whose stdout lines are JSON objects, read by a thread."""

    def __init__(self, args: list[str], log: Path) -> None:
        self._log = log.open("ab")
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                try:
                    self.lines.put(json.loads(line))
                except ValueError:
                    self.lines.put({"event": "garbage", "line": line})
        self.lines.put(None)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def expect(self, event: str, timeout: float = DEADLINE) -> dict[str, Any]:
        """The next line of kind ``event`` (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                item = self.lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(
                    f"process {self.pid} printed no {event!r} within {timeout} s; "
                    f"log:\n{self.log()}"
                ) from None
            if item is None:
                self.lines.put(None)
                raise AssertionError(
                    f"process {self.pid} exited ({self.proc.wait()}) before {event!r}; "
                    f"log:\n{self.log()}"
                )
            if item.get("event") == event:
                return item

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process {self.pid} still running; log:\n{self.log()}") from None

    def close(self) -> None:
        try:
            self.kill()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log.close()


class Procs:
    """Starts subprocesses for one test and kills every one still running at the end."""

    def __init__(self, url: str, schema: str, tmp: Path) -> None:
        self.url = url
        self.schema = schema
        self.tmp = tmp
        self.started: list[Proc] = []

    def worker(self, **config: Any) -> Proc:
        """tests/waitprocs/worker.py with this config (url and schema added)."""
        config = {"url": self.url, "schema": self.schema, **config}
        return self._spawn([str(HERE / "worker.py"), json.dumps(config)])

    def python(self, code: str) -> Proc:
        """``python -c code`` (run from the repository root)."""
        return self._spawn(["-c", code])

    def _spawn(self, args: list[str]) -> Proc:
        proc = Proc(args, self.tmp / f"proc-{len(self.started)}.log")
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            proc.close()
