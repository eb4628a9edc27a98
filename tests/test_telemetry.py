"""Telemetry: OpenTelemetry spans (one trace across retries, children, queue hops and a
takeover by another executor), Prometheus metrics by name and value, the worker's
/metrics endpoint, and the log filter that adds the workflow and step to records."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

import durably
from durably.telemetry.logs import FIELDS
from durably.telemetry.otel import OpenTelemetry
from durably.telemetry.prometheus import Prometheus, exposition
from queueprocs.util import Fleet
from support import wait_until


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    provider.shutdown()


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = wait_until(lambda: named(spans, name), what=f"a span {name!r}")
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


def sample(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    value = registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


def test_spans_and_metrics_of_a_retried_step_a_child_and_a_queue_hop(
    make_app: Callable[..., durably.App],
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = exporter
    registry = CollectorRegistry()
    app = make_app(telemetry=[OpenTelemetry(provider), Prometheus(registry)])
    app.queue("hops")
    attempts: list[int] = []

    @app.step(name="flaky", retries=2, interval=0.01)
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ConnectionError("first attempt fails")
        return x + 1

    @app.step(name="broken")
    def broken() -> None:
        raise ValueError("always")

    @app.workflow(name="child")
    def child(x: int) -> int:
        return x * 2

    @app.workflow(name="hop")
    def hop(x: int) -> int:
        return x + 100

    @app.workflow(name="parent")
    def parent(x: int) -> str:
        y = flaky(x)
        child(y)
        with pytest.raises(ValueError):
            broken()
        return hop.options(queue="hops").start(y).id

    with app:
        hop_id = parent.options(id="p-1").start(1).result(timeout=30)
        assert app.handle(hop_id).result(timeout=30) == 102
        # The trace context is stored beside the arguments, and never shown as one.
        [listed] = app.list_workflows(ids=["p-1"])
        assert listed.inputs == {"args": [1], "kwargs": {}}

    run = one(spans, "workflow parent")
    trace_id = run.context.trace_id
    root = one(spans, "start parent")
    assert run.parent is not None and run.parent.span_id == root.context.span_id
    assert run.attributes["durably.workflow.id"] == "p-1"
    assert run.attributes["durably.workflow.name"] == "parent"
    assert run.attributes["durably.recovery"] is False
    assert run.attributes["durably.workflow.outcome"] == "success"

    step = one(spans, "step flaky")
    assert step.context.trace_id == trace_id and step.parent.span_id == run.context.span_id
    assert step.attributes["durably.step.name"] == "flaky"
    assert step.attributes["durably.step.number"] == 1
    assert step.attributes["durably.step.attempt"] == 2
    assert [e.name for e in step.events] == ["durably.step.failed"]
    assert step.status.status_code is not StatusCode.ERROR

    failed = one(spans, "step broken")
    assert failed.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in failed.events)

    # The child: its start is an operation of the parent, its run a span below it.
    start_child = one(spans, "child child")
    assert start_child.parent.span_id == run.context.span_id
    child_run = one(spans, "workflow child")
    assert child_run.context.trace_id == trace_id
    assert child_run.parent.span_id == start_child.context.span_id
    assert child_run.attributes["durably.workflow.id"] == "p-1-2"

    # The queue hop: claimed by the queue's dispatcher, still the parent's trace.
    enqueue = one(spans, "enqueue hop")
    hop_run = one(spans, "workflow hop")
    assert hop_run.context.trace_id == trace_id
    assert hop_run.parent.span_id == enqueue.context.span_id
    assert hop_run.attributes["durably.queue"] == "hops"
    assert hop_run.attributes["durably.origin"] == "queue"

    # Metrics, by name and value.
    assert sample(registry, "durably_workflows_started_total", name="parent") == 1
    assert sample(registry, "durably_workflows_started_total", name="hop") == 1
    for name in ("parent", "child", "hop"):
        finished = sample(registry, "durably_workflows_finished_total", name=name, status="SUCCESS")
        assert finished == 1, name
    assert sample(registry, "durably_step_attempts_total", name="flaky") == 2
    assert sample(registry, "durably_step_retries_total", name="flaky") == 1
    assert sample(registry, "durably_step_errors_total", name="broken") == 1
    assert sample(registry, "durably_step_duration_seconds_count", name="flaky", kind="step") == 1
    assert sample(registry, "durably_queue_wait_seconds_count", queue="hops") == 1
    assert sample(registry, "durably_claims_total", origin="queue") == 1
    assert sample(registry, "durably_commit_batch_size_count") > 0
    assert sample(registry, "durably_commit_batch_size_sum") >= 5  # starts and checkpoints
    assert sample(registry, "durably_queue_depth", queue="hops") == 0
    text, content_type = exposition(registry)
    assert b"durably_workflows_finished_total" in text and content_type.startswith("text/plain")


def test_a_takeover_continues_the_trace_and_counts_as_a_recovery(
    make_app: Callable[..., durably.App],
    exporter: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """App A runs step 1, then stops inside step 2 and is shut down without finishing;
    app B takes the workflow over: its run is in the same trace, marked as a recovery."""
    provider, spans = exporter
    registry_a, registry_b = CollectorRegistry(), CollectorRegistry()
    entered, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def declare(app: durably.App) -> Any:
        @app.step(name="first")
        def first() -> str:
            return "one"

        @app.step(name="second")
        def second() -> str:
            runs.append("second")
            if len(runs) == 1:  # A's attempt: held until the test ends
                entered.set()
                release.wait(30)
            return "two"

        @app.workflow(name="job")
        def job() -> str:
            return first() + second()

        return job

    a = make_app(lease=1.0, telemetry=[OpenTelemetry(provider), Prometheus(registry_a)])
    job_a = declare(a)
    b = make_app(lease=1.0, telemetry=[OpenTelemetry(provider), Prometheus(registry_b)])
    declare(b)
    try:
        a.launch()
        job_a.options(id="moved").start()
        assert entered.wait(30)
        b.launch()
        a.shutdown(grace=0)  # released: B takes it over at its next heartbeat
        assert b.handle("moved").result(timeout=30) == "onetwo"
    finally:
        release.set()

    first_run, second_run = wait_until(
        lambda: len(named(spans, "workflow job")) == 2 and named(spans, "workflow job"),
        what="two runs of the workflow",
    )
    if first_run.attributes["durably.recovery"]:
        first_run, second_run = second_run, first_run
    assert first_run.context.trace_id == second_run.context.trace_id
    assert second_run.attributes["durably.recovery"] is True
    assert second_run.attributes["durably.origin"] == "takeover"
    assert second_run.attributes["durably.workflow.replayed_steps"] == 1
    assert second_run.attributes["durably.workflow.outcome"] == "success"
    assert first_run.parent.span_id == second_run.parent.span_id  # both under its start
    assert {s.parent.span_id for s in named(spans, "step second")} >= {second_run.context.span_id}
    assert len(named(spans, "step first")) == 1  # replayed, not run again: no span
    assert sample(registry_b, "durably_takeovers_total", name="job") == 1
    assert sample(registry_b, "durably_recoveries_total", name="job", reason="takeover") == 1
    assert sample(registry_b, "durably_workflows_started_total", name="job") == 0
    assert sample(registry_b, "durably_workflows_finished_total", name="job", status="SUCCESS") == 1
    assert sample(registry_a, "durably_workflows_started_total", name="job") == 1
    assert sample(registry_a, "durably_workflows_finished_total", name="job", status="SUCCESS") == 0


def test_without_telemetry_nothing_is_stamped_or_observed(
    make_app: Callable[..., durably.App], db: Any
) -> None:
    app = make_app()

    @app.workflow(name="plain")
    def plain() -> int:
        return 1

    with app:
        assert plain.options(id="plain").start().result(timeout=30) == 1
        assert app.engine.observers == ()
    inputs = db.execute("SELECT inputs FROM workflows WHERE id = 'plain'").fetchone()[0]
    assert "telemetry" not in inputs


def test_bad_telemetry_option_is_refused() -> None:
    with pytest.raises(durably.ConfigurationError, match="telemetry must be"):
        durably.App("postgresql://nowhere/x", telemetry="otel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_worker_serves_metrics_on_its_port(
    fleet: Fleet, make_app: Callable[..., durably.App]
) -> None:
    port = free_port()
    worker = fleet.start("--queue", "cli", "--metrics-port", str(port))
    worker.wait_for(f"metrics at http://127.0.0.1:{port}/metrics")
    jobs = fleet.enqueuer(make_app)
    fleet.open("m1")
    jobs.queues["cli"].enqueue(jobs.gated, "m1").result(timeout=30)
    jobs.gated.options(queue="cli-other", id="waits").start("waits")  # nobody serves it

    def scraped() -> str | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
        done = 'durably_workflows_finished_total{name="queueprocs.gated",status="SUCCESS"} 1.0'
        return text if done in text else None

    text = wait_until(scraped, what="the finished workflow in /metrics")
    assert 'durably_queue_depth{queue="cli-other"} 1.0' in text
    assert "durably_commit_batch_size_bucket" in text


def test_log_records_carry_the_workflow_and_step(make_app: Callable[..., durably.App]) -> None:
    app = make_app()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(durably.log_context())
    user_log = logging.getLogger("test_telemetry.user")
    user_log.addHandler(handler)
    user_log.setLevel(logging.INFO)

    @app.step(name="work")
    def work() -> None:
        user_log.info("in the step")

    @app.workflow(name="logged")
    def logged() -> None:
        user_log.info("in the body")
        work()

    try:
        with app:
            logged.options(id="logged-1").start().result(timeout=30)
        user_log.info("outside")
    finally:
        user_log.removeHandler(handler)
    seen = {r.getMessage(): [getattr(r, f) for f in FIELDS] for r in records}
    assert seen["in the body"] == ["logged-1", "logged", None, None]
    assert seen["in the step"] == ["logged-1", "logged", 1, "work"]
    assert seen["outside"] == [None, None, None, None]
