"""CPU cost of the telemetry hooks for one live step, without a database (docs/telemetry.md).

Run: ``python benchmarks/telemetry_hooks.py``. Each sample drives a step-shaped protocol
through ``execution.observe.observed`` with no observer, Prometheus, OpenTelemetry (SDK,
batch processor, an exporter that drops spans) and both.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from durably.execution.context import WorkflowContext
from durably.execution.observe import observed
from durably.telemetry.otel import OpenTelemetry
from durably.telemetry.prometheus import Prometheus


class Dropped(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Host:
    observers: tuple[Any, ...] = ()


def protocol() -> Any:
    return 1
    yield  # a generator, like every protocol


def per_step(observers: tuple[Any, ...], n: int = 20_000) -> float:
    """Microseconds per step through the hooks."""
    host = Host()
    host.observers = observers
    ctx = WorkflowContext(host, "w", "wf", 1)  # type: ignore[arg-type]
    start = time.perf_counter()
    for i in range(n):
        gen = observed(ctx, i + 1, "s", "step", protocol()) if observers else protocol()
        with contextlib.suppress(StopIteration):
            next(gen)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    cases: list[tuple[str, tuple[Any, ...]]] = [
        ("none", ()),
        ("prometheus", (Prometheus(CollectorRegistry()),)),
        ("otel", (OpenTelemetry(provider),)),
        ("both", (OpenTelemetry(provider), Prometheus(CollectorRegistry()))),
    ]
    for label, observers in cases:
        print(f"{label:10} {min(per_step(observers) for _ in range(3)):.1f} us/step")
    provider.shutdown()


if __name__ == "__main__":
    main()
