"""What every benchmark process shares, durably's and its competitors' alike: timing and
percentile helpers, the child-process line protocol, and the frame of a competitor's side
script (its registry of benchmarks and helper processes, its command line, its output).

It imports nothing but the standard library and psycopg, so that a side script running in
a competitor's own venv (``benchmarks/.venv-dbos``, ``benchmarks/.venv-procrastinate``,
where durably is not installed) can use it too: such a script puts the repository root on
``sys.path`` and imports ``benchmarks.sidekit``.

The line protocol: a child prints ``ready`` once it has imported everything and connected
(so start-up costs stay out of the measurement), waits for ``go`` on stdin, prints one
JSON object a line when it has something to report, and stops when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------- timing helpers


def per_call(fn: Callable[[], object], n: int) -> list[float]:
    """Seconds taken by each of ``n`` sequential calls of ``fn``."""
    clock = time.perf_counter
    out = []
    for _ in range(n):
        start = clock()
        fn()
        out.append(clock() - start)
    return out


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000.0


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, by linear interpolation."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    k = (len(data) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def proc_status() -> dict[str, float]:
    """Threads and memory of this process, from /proc/self/status (RSS in MiB)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "Threads":
                    out["threads"] = float(value.split()[0])
                elif key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    out["python_threads"] = float(threading.active_count())
    return out


# ---------------------------------------------------------------------- line protocol


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wait_for(word: str) -> None:
    for line in sys.stdin:
        if line.strip() == word:
            return
    sys.exit(0)  # the parent went away


def wait_for_eof() -> None:
    for _ in sys.stdin:
        pass


class Child:
    """A child process speaking the line protocol: it prints ``ready``, waits for ``go``,
    prints JSON lines, and stops when stdin closes. ``env`` adds to this process's
    environment; its stderr goes to ours."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, **env} if env else None, cwd=ROOT,
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout: float) -> str:
        """The next line the child prints."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output within {timeout:.0f} s from {self.argv[:4]}") from None
        if line is None:
            self._lines.put(None)
            raise RuntimeError(f"child {self.argv[:4]} exited with {self.proc.wait()}")
        return line

    def expect(self, word: str, timeout: float = 120) -> None:
        """Skip lines until the child prints ``word``."""
        while self.line(timeout) != word:
            pass

    def json(self, timeout: float = 600) -> Any:
        """The next line that is a JSON object."""
        while True:
            line = self.line(timeout)
            if line.startswith("{"):
                return json.loads(line)

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def close(self, timeout: float = 30) -> None:
        """Close stdin (the child stops), wait, and SIGKILL it if it lingers."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            with suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no atexit, no clean-up (a crash)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


async def produce(
    rate: float, duration: float, send: Callable[[int], Awaitable[None]], max_in_flight: int
) -> None:
    """Offer a fixed load: ``send(seq)`` for seq = 0, 1, ... at ``rate`` a second for
    ``duration`` seconds, with at most ``max_in_flight`` sends waiting for their answer
    (like a web tier with a bounded pool: past that it falls behind the offered rate).
    Prints ``{"sent", "in_flight", "behind"}`` every second and, once every send has
    returned, a last line with ``"done": true``."""
    tick = 0.01
    started = time.monotonic()
    sent = 0
    pending: set[asyncio.Task[None]] = set()
    last_report = started

    def report(**extra: object) -> None:
        due = int((time.monotonic() - started) * rate)
        line = {"sent": sent, "in_flight": len(pending), "behind": max(0, due - sent)}
        say(json.dumps({**line, **extra}))

    while (now := time.monotonic()) - started < duration:
        due = min(int((now - started) * rate), sent + max_in_flight - len(pending))
        for seq in range(sent, due):
            task = asyncio.create_task(send(seq))
            pending.add(task)
            task.add_done_callback(pending.discard)
        sent = max(sent, due)
        if now - last_report >= 1.0:
            last_report = now
            report()
        await asyncio.sleep(tick)
    while pending:
        await asyncio.sleep(1.0)
        report()
    report(done=True)


# ---------------------------------------------------------------------- side scripts

Figures = list[dict[str, Any]]


def measurement(
    key: str, label: str, unit: str, samples: list[float], note: str = "", comparable: bool = True
) -> dict[str, Any]:
    """A figure as ``benchmarks.core.Measurement.from_json`` reads it."""
    return {
        "key": key, "label": label, "unit": unit, "samples": samples, "note": note,
        "comparable": comparable,
    }  # fmt: skip


@contextmanager
def fresh_schema(url: str, base: str) -> Iterator[str]:
    """A schema name of its own for one repeat (the schema is dropped afterwards)."""
    name = f"{base}_{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def size(args: argparse.Namespace, full: int, quick: int) -> int:
    """An iteration count: ``full`` normally, ``quick`` under --quick."""
    return quick if args.quick else full


def heavy_repeats(args: argparse.Namespace) -> int:
    """Repeats for the figures that take seconds each (queues, recovery): at most 3."""
    return min(args.repeats, 3)


def threaded_rates(
    one: Callable[[], object], threads: int, count: int, repeats: int
) -> list[float]:
    """Calls a second of ``one`` from ``threads`` threads, each calling it ``count`` times
    in a row, once per repeat (after 20 calls a thread to warm up)."""

    def some(count: int) -> None:
        for _ in range(count):
            one()

    rates = []
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(some, [20] * threads))
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(some, [count] * threads))
            rates.append(threads * count / (time.perf_counter() - start))
    return rates


def latencies(one: Callable[[], float], n: int, gap: float) -> list[float]:
    """``n`` sequential enqueue-to-start latencies (``one()``, in s), with a random pause
    of 0 to ``gap`` seconds before each."""
    out = []
    for _ in range(n):
        time.sleep(random.uniform(0, gap))
        out.append(one())
    return out


Progress = Callable[[psycopg.Connection[Any]], tuple[int, float, float]]


def timed_drain(children: list[Child], url: str, n: int, progress: Progress) -> tuple[float, float]:
    """Let worker processes (each printing ``ready``, starting on ``go``) run ``n`` queued
    jobs. ``progress(conn)`` reads (jobs done, the first start, the last completion), the
    times in epoch seconds as the database stamped them. Returns the drain rate from the
    first start to the last completion (so process launch is not in it) and the seconds
    from ``go`` to the last completion; the children are closed."""
    row = (0, 0.0, 0.0)
    try:
        for child in children:
            child.expect("ready")
        with psycopg.connect(url, autocommit=True) as conn:
            go = time.time()
            for child in children:
                child.send("go")

            def done() -> bool:
                nonlocal row
                row = progress(conn)
                return row[0] >= n

            wait_until(done, 1800, f"{n} queued jobs", interval=0.1)
    finally:
        for child in children:
            child.close()
    _, first_start, last_done = row
    return n / (last_done - first_start), last_done - go


Drain = Callable[[str, int], tuple[float, float, float]]


def drains(
    args: argparse.Namespace, log: Callable[[str], None], drain: Drain, workers: tuple[int, ...]
) -> tuple[dict[int, list[float]], dict[int, list[float]], list[float]]:
    """The queue-throughput repeats: for each count of worker processes, ``heavy_repeats``
    times on a fresh schema, ``drain(schema, workers)`` returns (enqueue rate up front,
    drain rate, seconds from go to the last completion). Returns the drain rates and the
    seconds by worker count, and every enqueue rate."""
    rates: dict[int, list[float]] = {w: [] for w in workers}
    totals: dict[int, list[float]] = {w: [] for w in workers}
    enqueue_rates: list[float] = []
    for w in workers:
        for _ in range(heavy_repeats(args)):
            with fresh_schema(args.url, args.schema) as schema:
                up_front, rate, total = drain(schema, w)
            enqueue_rates.append(up_front)
            rates[w].append(rate)
            totals[w].append(total)
            log(f"{w} worker(s): {rate:,.0f}/s, {total:.2f} s from go")
    return rates, totals, enqueue_rates


class Side:
    """A competitor's side script: the benchmarks it implements (``@side.bench(name)``,
    returning figures under durably's keys) and its helper processes
    (``@side.proc(name)``, started with ``side.child``), run by ``side.main()``:

        python -P SCRIPT NAME --url URL --schema S --repeats 5 [--quick]

    Progress goes to stderr; the last line on stdout is ``{"measurements": [...]}``."""

    def __init__(self, library: str, distribution: str, script: str) -> None:
        self.library = library  # its name in log lines
        self.distribution = distribution  # its name on PyPI, for the version logged
        self.script = os.path.abspath(script)
        self.benchmarks: dict[str, Callable[[argparse.Namespace], Figures]] = {}
        self.procs: dict[str, Callable[[argparse.Namespace], None]] = {}

    def bench(self, name: str) -> Callable[[Callable[..., Figures]], Callable[..., Figures]]:
        def register(fn: Callable[..., Figures]) -> Callable[..., Figures]:
            self.benchmarks[name] = fn
            return fn

        return register

    def proc(self, name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
        def register(fn: Callable[..., None]) -> Callable[..., None]:
            self.procs[name] = fn
            return fn

        return register

    def child(self, kind: str, *args: str, env: dict[str, str] | None = None) -> Child:
        """This script again, as helper process ``kind``, in the same interpreter."""
        return Child([sys.executable, "-P", self.script, kind, *args], env=env)

    def log(self, message: str) -> None:
        print(f"  [{self.library}] {message}", file=sys.stderr, flush=True)

    def main(self, argv: list[str] | None = None) -> int:
        p = argparse.ArgumentParser(prog=os.path.basename(self.script))
        p.add_argument("name", choices=sorted([*self.benchmarks, *self.procs, "list"]))
        p.add_argument("--url", default="")
        p.add_argument("--schema", default=f"{self.library}_bench")
        p.add_argument("--repeats", type=int, default=5)
        p.add_argument("--quick", action="store_true")
        p.add_argument("--count", type=int, default=0)
        p.add_argument("--executor-id", default=None)
        p.add_argument("--concurrency", type=int, default=0)
        p.add_argument("--rate", type=float, default=0.0)
        p.add_argument("--duration", type=float, default=0.0)
        args = p.parse_args(argv)
        if args.name == "list":
            print("\n".join(self.benchmarks))
            return 0
        if args.name in self.procs:
            self.procs[args.name](args)
            return 0
        from importlib.metadata import version

        self.log(f"{self.distribution} {version(self.distribution)}: {args.name}")
        figures = self.benchmarks[args.name](args)
        say(json.dumps({"measurements": figures}))
        return 0
