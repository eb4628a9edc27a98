"""Prometheus metrics of workflows, steps, queues, recovery and group commit.

Needs the ``prometheus`` extra (``prometheus-client``). Metrics go to the registry given
(default: prometheus_client's global ``REGISTRY``); apps that share a registry share its
metrics (each is defined once per registry). Queue gauges are read from the database at
each scrape. Names and labels: docs/telemetry.md.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from durably.errors import MissingDependency, WorkflowCancelled

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
        start_http_server,
    )
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise MissingDependency(
        "Prometheus metrics need the prometheus extra: pip install 'durably[prometheus]' "
        f"(importing prometheus_client failed: {exc})"
    ) from exc
from durably.execution.observe import RECOVERY_ORIGINS, Observer
from durably.store.gauges import queue_gauges

if TYPE_CHECKING:
    from durably.execution.context import WorkflowContext
    from durably.execution.effects import StepFailed
    from durably.execution.host import Host
    from durably.runtime.engine import Engine

log = logging.getLogger("durably.telemetry")

# Seconds: from a fast step (a few ms) to a long one (minutes).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                    30, 60, 300)  # fmt: skip
# Seconds between enqueue and start: from at once to hours.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
                3600)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Metrics:
    """The metric objects of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.started = Counter(
            "durably_workflows_started", "Workflows whose first run began", ["name"], registry=r
        )
        self.finished = Counter(
            "durably_workflows_finished",
            "Workflow runs that ended with an outcome (SUCCESS, ERROR, CANCELLED)",
            ["name", "status"],
            registry=r,
        )
        self.running = Gauge(
            "durably_workflow_runs_active",
            "Runs of workflow bodies in progress in this process",
            ["name"],
            registry=r,
        )
        self.step_duration = Histogram(
            "durably_step_duration_seconds",
            "Time from a live step's call to its checkpoint (all attempts and retry delays)",
            ["name", "kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "durably_step_attempts", "Attempts of step bodies that ran", ["name"], registry=r
        )
        self.retries = Counter(
            "durably_step_retries", "Failed step attempts that will be retried", ["name"],
            registry=r,
        )  # fmt: skip
        self.step_errors = Counter(
            "durably_step_errors", "Steps whose outcome is an error", ["name"], registry=r
        )
        self.queue_wait = Histogram(
            "durably_queue_wait_seconds",
            "Time from enqueue to the first start of queued work (needs an enqueuer with "
            "telemetry; clocks of both machines)",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.claimed = Counter(
            "durably_claims",
            "Workflows this executor claimed, by why (queue, wakeup, own, takeover, abandoned, "
            "failover)",
            ["origin"],
            registry=r,
        )
        self.recoveries = Counter(
            "durably_recoveries",
            "Workflows recovered here (own leftovers, takeovers, abandoned runs, replays after a "
            "failover)",
            ["name", "reason"],
            registry=r,
        )
        self.takeovers = Counter(
            "durably_takeovers",
            "Workflows taken over here from executors whose lease expired",
            ["name"],
            registry=r,
        )
        self.batch_size = Histogram(
            "durably_commit_batch_size",
            "Writes per group-commit transaction",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queues = _QueueCollector()
        r.register(self.queues)


class _QueueCollector(Collector):
    """Queue gauges read from the databases of the engines that report here."""

    def __init__(self) -> None:
        self.engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def describe(self) -> list[Any]:
        return []  # read at collection only: nothing to query when registering

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "durably_queue_depth", "Queued work waiting to start (ENQUEUED or DELAYED)",
            labels=["queue"],
        )  # fmt: skip
        oldest = GaugeMetricFamily(
            "durably_queue_oldest_seconds",
            "Age of the oldest queued work ready to start",
            labels=["queue"],
        )
        running = GaugeMetricFamily(
            "durably_queue_running", "Queued work running now (on any worker)", labels=["queue"]
        )
        totals: dict[str, list[float]] = {}
        seen: set[tuple[str, str]] = set()
        for engine in list(self.engines):
            db = engine.db
            if (db.url, db.schema) in seen:
                continue  # two apps of one schema: counted once
            seen.add((db.url, db.schema))
            try:
                rows = db.run(queue_gauges(db.schema, db.dialect))
            except Exception as exc:  # a scrape must not fail because the database is away
                log.debug("durably: queue gauges not read: %s", exc)
                continue
            for row in rows:
                total = totals.setdefault(row.queue, [0.0, 0.0, 0.0])
                total[0] += row.waiting
                total[1] = max(total[1], row.oldest_seconds)
                total[2] += row.running
        for queue, (waiting, age, run) in sorted(totals.items()):
            depth.add_metric([queue], waiting)
            oldest.add_metric([queue], age)
            running.add_metric([queue], run)
        yield depth
        yield oldest
        yield running


_by_registry: dict[int, tuple[CollectorRegistry, _Metrics]] = {}
_lock = threading.Lock()


def _metrics(registry: CollectorRegistry) -> _Metrics:
    with _lock:
        found = _by_registry.get(id(registry))
        if found is None or found[0] is not registry:
            found = (registry, _Metrics(registry))
            _by_registry[id(registry)] = found
        return found[1]


class Prometheus(Observer):
    """Counts and times durably's work into ``registry`` (default: the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self._m = _metrics(self.registry)

    def attach(self, host: Host) -> None:
        self._m.queues.engines.add(host)  # type: ignore[arg-type]

    def run_started(self, ctx: WorkflowContext) -> Any:
        telemetry = ctx.telemetry or {}
        if telemetry.get("origin") in (None, "queue") and not ctx.recorded:
            self._m.started.labels(ctx.name).inc()
        self._m.running.labels(ctx.name).inc()
        return None

    def run_ended(self, ctx: WorkflowContext, token: Any, error: BaseException | None) -> None:
        self._m.running.labels(ctx.name).dec()
        if error is None:
            status = "SUCCESS"
        elif ctx.finished:
            status = "ERROR"
        elif ctx.cancelled or isinstance(error, WorkflowCancelled):
            status = "CANCELLED"
        else:
            return  # waits in the database, or left for another run: not finished
        self._m.finished.labels(ctx.name, status).inc()

    def step_started(self, ctx: WorkflowContext, position: int, name: str, kind: str) -> Any:
        if kind in ("step", "transaction"):
            self._m.attempts.labels(name).inc()
        return time.perf_counter()

    def step_ended(
        self,
        ctx: WorkflowContext,
        position: int,
        name: str,
        kind: str,
        token: Any,
        error: BaseException | None,
    ) -> None:
        if kind not in ("step", "transaction"):
            return  # waits and child starts: their time is not the step's work
        self._m.step_duration.labels(name, kind).observe(time.perf_counter() - token)
        if error is not None:
            self._m.step_errors.labels(name).inc()

    def step_failed(self, report: StepFailed) -> None:
        if report.retry_in is not None:
            self._m.retries.labels(report.step).inc()
            self._m.attempts.labels(report.step).inc()

    def claimed(self, ctx: WorkflowContext, origin: str, queue: str | None) -> None:
        self._m.claimed.labels(origin).inc()
        if origin in RECOVERY_ORIGINS:
            self._m.recoveries.labels(ctx.name, origin).inc()
            if origin == "takeover":
                self._m.takeovers.labels(ctx.name).inc()
        elif origin == "queue" and queue is not None and ctx.epoch == 2:
            at = (ctx.telemetry or {}).get("at")
            if isinstance(at, int | float):
                self._m.queue_wait.labels(queue).observe(max(0.0, time.time() - at))

    def commit_batch(self, size: int) -> None:
        self._m.batch_size.observe(size)


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The metrics of ``registry`` (default: the global one) in the text format, and its
    content type: the body and header of a ``/metrics`` response."""
    return generate_latest(registry if registry is not None else REGISTRY), CONTENT_TYPE_LATEST


def serve(port: int, host: str = "127.0.0.1", registry: CollectorRegistry | None = None) -> Any:
    """Serve ``/metrics`` of ``registry`` on ``host:port`` from a daemon thread; returns
    the server (``shutdown()`` stops it)."""
    started = start_http_server(port, addr=host, registry=registry or REGISTRY)
    return started[0] if isinstance(started, tuple) else started
