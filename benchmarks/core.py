"""The machinery shared by every benchmark: measurements, the run context, the registry.

A benchmark is a function ``(ctx: Context) -> list[Measurement]`` registered with
``@benchmark("name")``. It warms up, then measures ``ctx.repeats`` times; each
``Measurement`` holds one sample per repeat, and the runner reports their median, min and
max. Anything a benchmark creates in the database lives in a fresh schema
(``ctx.app()`` / ``ctx.schema()``) that is dropped when the benchmark ends.

A figure may carry a ``Target`` (from the issue that asked for it), checked against its
median when the table is printed; the runner also joins each figure with the DBOS
Transact figure of the same key when ``--with-dbos`` measured one (``benchmarks.dbos``).
Work that needs processes of its own (queue workers, a crash, a recovery) runs as
``Child`` processes (``benchmarks.procs``) that speak a small line protocol.
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
from benchmarks import sidekit
from benchmarks.sidekit import median_ms as median_ms
from benchmarks.sidekit import per_call as per_call
from benchmarks.sidekit import percentile as percentile
from benchmarks.sidekit import wait_until as wait_until

DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / f"durably-bench-{os.getuid()}"


# ---------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Target:
    """What the issue asks of a figure: ``kind`` is ``max`` or ``min`` (of the median),
    ``max_x_floor`` (median / the PG floor of the run at most ``value``) or ``min_x_dbos``
    (at least ``value`` times better than DBOS measured in the same run)."""

    kind: str
    value: float

    def describe(self, unit: str) -> str:
        if self.kind == "max":
            return f"<= {self.value:g} {unit}"
        if self.kind == "min":
            return f">= {self.value:,.0f} {unit}"
        if self.kind == "max_x_floor":
            return f"<= {self.value:g}x floor"
        return f">= {self.value:g}x DBOS"


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
    target: Target | None = None
    # False when the DBOS figure of the same key is not like for like (e.g. a total
    # over a different number of workflows): the table shows both, without a ratio.
    comparable: bool = True

    @property
    def higher_is_better(self) -> bool:
        return self.unit.startswith("/")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "label": self.label, "unit": self.unit, "median": self.median,
            "min": self.min, "max": self.max, "samples": self.samples,
            "ratio_to": self.ratio_to, "note": self.note, "comparable": self.comparable,
            "target": None if self.target is None else [self.target.kind, self.target.value],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        target = data.get("target")
        return cls(
            key=data["key"], label=data["label"], unit=data["unit"],
            samples=[float(v) for v in data["samples"]], ratio_to=data.get("ratio_to"),
            note=data.get("note", ""), comparable=data.get("comparable", True),
            target=Target(target[0], float(target[1])) if target else None,
        )  # fmt: skip


@dataclass
class Benchmark:
    name: str
    fn: Callable[[Context], list[Measurement]]
    doc: str = ""
    # Run only when named with --only (it restarts the server, or takes long).
    default: bool = True


REGISTRY: list[Benchmark] = []


def benchmark(
    name: str, *, default: bool = True
) -> Callable[[Callable[[Context], list[Measurement]]], Any]:
    """Register a benchmark function under ``name`` (run in registration order);
    ``default=False`` runs it only when asked for by name."""

    def register(fn: Callable[[Context], list[Measurement]]) -> Callable[..., Any]:
        if any(b.name == name for b in REGISTRY):
            raise ValueError(f"benchmark {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY.append(Benchmark(name, fn, doc[0] if doc else "", default))
        return fn

    return register


# ---------------------------------------------------------------------- run context


@dataclass
class Context:
    """What a benchmark gets: the database, how long to measure, where to log."""

    url: str
    repeats: int
    quick: bool
    # The embedded server's data directory (None with --database-url).
    data_dir: Path | None = None
    # Drop the OS page cache before cold reads (--cold; root only).
    cold: bool = False

    def size(self, full: int, quick: int) -> int:
        """An iteration count: ``full`` normally, ``quick`` under --quick."""
        return quick if self.quick else full

    @property
    def heavy_repeats(self) -> int:
        """Repeats for the figures that take seconds each (queues, recovery): at most 3."""
        return min(self.repeats, 3)

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
            observers = bench_telemetry(os.environ.get("DURABLY_BENCH_TELEMETRY", ""))
            if observers:
                kwargs.setdefault("telemetry", observers)
            app = durably.App(self.url, schema=name, **kwargs)
            try:
                app.launch()
                yield app
            finally:
                app.shutdown(grace=5)


# ---------------------------------------------------------------------- timing helpers
# per_call, median_ms, percentile and wait_until live in benchmarks.sidekit (the side
# scripts of the competitors use them too); they are imported above for the benchmarks.


async def per_call_async(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    """Seconds taken by each of ``n`` sequential awaits of ``fn()``."""
    clock = time.perf_counter
    out = []
    for _ in range(n):
        start = clock()
        await fn()
        out.append(clock() - start)
    return out


def next_xid(conn: psycopg.Connection[Any]) -> int:
    """The next transaction ID Postgres will assign (reading it assigns none).

    Every transaction that writes gets one XID, so the difference across a measured
    stretch counts write commits, whoever made them (the keeper's heartbeat adds ~1
    every few seconds).
    """
    row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------------- child processes


class Child(sidekit.Child):
    """A child process speaking the line protocol (``benchmarks.sidekit``), such as the
    helpers of ``benchmarks.procs``."""

    @classmethod
    def durably(cls, kind: str, *args: str) -> Child:
        """``python -m benchmarks.procs KIND ARGS`` with this interpreter."""
        return cls([sys.executable, "-m", "benchmarks.procs", kind, *args])


# ---------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    description: str
    data_dir: Path | None = None


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
        yield Server(server.url, f"embedded (durably.embedded, data dir {path})", path)
    finally:
        server.release()


def _redact(url: str) -> str:
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable URL>"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


def bench_telemetry(which: str) -> list[Any]:
    """Observers for ``DURABLY_BENCH_TELEMETRY`` (otel, prometheus, all; empty: none), to
    measure what telemetry costs: spans go through the SDK's batch processor to an
    exporter that drops them, metrics to a registry of their own."""
    chosen = {part.strip() for part in which.split(",") if part.strip()}
    if "all" in chosen:
        chosen = {"otel", "prometheus"}
    observers: list[Any] = []
    if "otel" in chosen:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from durably.telemetry.otel import OpenTelemetry

        class Dropped(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        observers.append(OpenTelemetry(provider))
    if "prometheus" in chosen:
        from prometheus_client import CollectorRegistry

        from durably.telemetry.prometheus import Prometheus

        observers.append(Prometheus(CollectorRegistry()))
    return observers
