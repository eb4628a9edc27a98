"""Polling without blind sleeps, sampling the database while work runs, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

import durably
from queueprocs.jobs import Jobs, register
from support import wait_until

T = TypeVar("T")

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
DEADLINE = 20.0


def connect(url: str, schema: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    return conn


def statuses(db: psycopg.Connection[Any], ids: Iterable[str]) -> dict[str, str]:
    rows = db.execute("SELECT id, status FROM workflows WHERE id = ANY(%s)", (list(ids),))
    return dict(rows.fetchall())


def all_status(db: psycopg.Connection[Any], ids: Sequence[str], status: str) -> bool:
    found = statuses(db, ids)
    return len(found) == len(ids) and all(s == status for s in found.values())


class Sampler:
    """Runs ``query`` over and over on its own connection while work runs; every result
    (a list of rows) is kept in ``samples``. Use as a context manager."""

    def __init__(self, url: str, schema: str, query: str, params: Sequence[Any] = ()) -> None:
        self._url, self._schema, self._query, self._params = url, schema, query, params
        self.samples: list[list[tuple[Any, ...]]] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with connect(self._url, self._schema) as conn:
                while not self._stop.is_set():
                    self.samples.append(conn.execute(self._query, self._params).fetchall())
                    self._stop.wait(0.002)  # pacing only: sample about every few ms
        except BaseException as exc:
            self._error = exc

    def __enter__(self) -> Sampler:
        self._thread.start()
        wait_until(lambda: self.samples or self._error, what="a first sample")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._error is not None:
            raise AssertionError(f"sampler failed: {self._error!r}")


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of [start, end] intervals that hold at one instant."""
    points = []
    for start, end in intervals:
        points.append((start, 1))
        points.append((end, -1))
    points.sort(key=lambda p: (p[0], p[1]))  # an end at t comes before a start at t
    best = now = 0
    for _, delta in points:
        now += delta
        best = max(best, now)
    return best


class WorkerProcess:
    """``python -m durably.cli worker ...`` as a subprocess; stdout+stderr are collected."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.args = list(args)
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durably.cli", "worker", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._log.write(line)
            self._log.flush()

    def output(self) -> str:
        return "\n".join(self.lines[-80:])

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        """Wait for an output line containing ``text``; fail at once if the process ends."""

        def seen() -> str | bool:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(
                    f"worker {self.pid} exited with {self.proc.returncode} before printing "
                    f"{text!r}; output:\n{self.output()}"
                )
            return False

        try:
            return str(wait_until(seen, timeout, f"{text!r} from worker {self.pid}"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\noutput:\n{self.output()}") from None

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} still running after {timeout} s; output:\n{self.output()}"
            ) from None
        self._reader.join(timeout=5)
        return code

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        self._log.close()


class Fleet:
    """Worker processes of ``queueprocs.worker_app`` on one test schema, plus the gates and
    effects file they share with the test."""

    def __init__(self, url: str, schema: str, tmp: Path) -> None:
        self.url = url
        self.schema = schema
        self.tmp = tmp
        self.gates = tmp / "gates"
        self.gates.mkdir(exist_ok=True)
        self.effects = tmp / "effects.log"
        self.workers: list[WorkerProcess] = []

    def env(
        self, *, executor_id: str | None = None, lease: float = 15.0, poll: float = 0.5
    ) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(TESTS), str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        env.update(
            QP_DATABASE_URL=self.url,
            QP_SCHEMA=self.schema,
            QP_GATES=str(self.gates),
            QP_EFFECTS=str(self.effects),
            QP_LEASE=str(lease),
            QP_POLL=str(poll),
        )
        if executor_id is not None:
            env["QP_EXECUTOR_ID"] = executor_id
        return env

    def start(
        self,
        *args: str,
        executor_id: str | None = None,
        lease: float = 15.0,
        poll: float = 0.5,
        target: str = "queueprocs.worker_app:app",
        ready: bool = True,
    ) -> WorkerProcess:
        """Start ``durably worker TARGET ARGS...``; by default wait until it is ready."""
        name = executor_id or f"worker{len(self.workers)}"
        worker = WorkerProcess(
            [target, *args],
            self.env(executor_id=executor_id, lease=lease, poll=poll),
            self.tmp / f"{name}.log",
        )
        self.workers.append(worker)
        if ready:
            worker.wait_for("ready")
        return worker

    def enqueuer(self, make_app: Callable[..., durably.App]) -> Jobs:
        """An app in the test process that only enqueues: it claims from no queue, and its
        lease is so long that it never takes over another executor's work in a test."""
        app = make_app(lease=3600.0)
        jobs = register(app, self.gates, self.effects)
        app.launch(queues=[])
        return jobs

    def open(self, *keys: str) -> None:
        for key in keys:
            (self.gates / key).touch()

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
