"""The machinery shared by every benchmark: measurements, the run context, the registry.

A benchmark is a function ``(ctx: Context) -> list[Measurement]`` registered with
``@benchmark("name")``. It warms up, then measures ``ctx.repeats`` times; each
``Measurement`` holds one sample per repeat, and the runner reports their median, min and
max. Anything a benchmark creates in the database lives in a fresh schema
(``ctx.app()`` / ``ctx.schema()``) that is dropped when the benchmark ends.

Adding a figure later (queues, recovery, a DBOS comparison run in its own venv) means
adding one more registered function in a module that ``benchmarks.run`` imports.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import durably

DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / f"durably-bench-{os.getuid()}"


# ---------------------------------------------------------------------- measurements


@dataclass
class Measurement:
    """One figure: a sample per repeat, in ``unit``.

    ``ratio_to`` names the key of another measurement of the run; the table then shows
    this figure's median divided by that one's (e.g. a latency as a multiple of the
    Postgres floor). ``note`` is printed beside the figure.
    """

    key: str
    label: str
    unit: str
    samples: list[float]
    ratio_to: str | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


@dataclass
class Benchmark:
    name: str
    fn: Callable[[Context], list[Measurement]]
    doc: str = ""


REGISTRY: list[Benchmark] = []


def benchmark(name: str) -> Callable[[Callable[[Context], list[Measurement]]], Any]:
    """Register a benchmark function under ``name`` (run in registration order)."""

    def register(fn: Callable[[Context], list[Measurement]]) -> Callable[..., Any]:
        if any(b.name == name for b in REGISTRY):
            raise ValueError(f"benchmark {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY.append(Benchmark(name, fn, doc[0] if doc else ""))
        return fn

    return register


# ---------------------------------------------------------------------- run context


@dataclass
class Context:
    """What a benchmark gets: the database, how long to measure, where to log."""

    url: str
    repeats: int
    quick: bool

    def size(self, full: int, quick: int) -> int:
        """An iteration count: ``full`` normally, ``quick`` under --quick."""
        return quick if self.quick else full

    def log(self, message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    def connect(self) -> psycopg.Connection[Any]:
        """A plain autocommit connection (the caller closes it)."""
        return psycopg.connect(self.url, autocommit=True)

    @contextmanager
    def schema(self, prefix: str = "bench") -> Iterator[str]:
        """A fresh schema name; the schema (if created) is dropped afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        try:
            yield name
        finally:
            with self.connect() as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )

    @contextmanager
    def app(self, **kwargs: Any) -> Iterator[durably.App]:
        """A launched ``durably.App`` on a fresh schema, shut down and dropped afterwards."""
        with self.schema() as name:
            app = durably.App(self.url, schema=name, **kwargs)
            try:
                app.launch()
                yield app
            finally:
                app.shutdown(grace=5)


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


async def per_call_async(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    """Seconds taken by each of ``n`` sequential awaits of ``fn()``."""
    clock = time.perf_counter
    out = []
    for _ in range(n):
        start = clock()
        await fn()
        out.append(clock() - start)
    return out


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000.0


def next_xid(conn: psycopg.Connection[Any]) -> int:
    """The next transaction ID Postgres will assign (reading it assigns none).

    Every transaction that writes gets one XID, so the difference across a measured
    stretch counts write commits, whoever made them (the keeper's heartbeat adds ~1
    every few seconds).
    """
    row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    description: str


@contextmanager
def database(url: str | None, data_dir: str | os.PathLike[str] | None) -> Iterator[Server]:
    """The server to measure: ``url``, else the embedded one in ``data_dir``."""
    if url:
        yield Server(url, f"external ({_redact(url)})")
        return
    from durably import embedded

    path = Path(data_dir or DEFAULT_DATA_DIR)
    started = time.perf_counter()
    server = embedded.acquire(path)
    took = time.perf_counter() - started
    print(f"embedded PostgreSQL in {path} ready in {took:.1f} s", file=sys.stderr, flush=True)
    try:
        yield Server(server.url, f"embedded (durably.embedded, data dir {path})")
    finally:
        server.release()


def _redact(url: str) -> str:
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable URL>"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})
