"""OpenTelemetry tracing of workflows: a span per run, per step and per wait, one trace
per workflow across queue hops, child workflows and recovery on other workers.

Needs the ``otel`` extra (``opentelemetry-api``). Spans go to the tracer provider given,
else the global one (``opentelemetry.trace.set_tracer_provider``); with none set the API
hands out non-recording spans and nothing is exported. Names: docs/telemetry.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durably.errors import LostOwnership, MissingDependency, WorkflowCancelled

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - the extra is installed in tests
    raise MissingDependency(
        "OpenTelemetry tracing needs the otel extra: pip install 'durably[otel]' "
        f"(importing opentelemetry failed: {exc})"
    ) from exc

from durably.execution.observe import RECOVERY_ORIGINS, Observer
from durably.execution.protocol import Parked

if TYPE_CHECKING:
    from durably.execution.context import WorkflowContext
    from durably.execution.effects import StepFailed

# Attribute names (documented in docs/telemetry.md).
WORKFLOW_ID = "durably.workflow.id"
WORKFLOW_NAME = "durably.workflow.name"
WORKFLOW_EPOCH = "durably.workflow.epoch"
WORKFLOW_REPLAYED = "durably.workflow.replayed_steps"
WORKFLOW_OUTCOME = "durably.workflow.outcome"
STEP_NAME = "durably.step.name"
STEP_NUMBER = "durably.step.number"
STEP_KIND = "durably.step.kind"
STEP_ATTEMPT = "durably.step.attempt"
QUEUE = "durably.queue"
RECOVERY = "durably.recovery"
ORIGIN = "durably.origin"

_W3C = TraceContextTextMapPropagator()


class OpenTelemetry(Observer):
    """Spans for durably's work, exported by ``tracer_provider`` (default: the global)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("durably", tracer_provider=tracer_provider)

    # ------------------------------------------------------------- starts and enqueues

    def stamp(self, workflow_id: str, name: str, kind: str, queue: str | None) -> dict[str, Any]:
        """The trace context every run of the workflow, anywhere, is parented to: the
        caller's current span (a workflow's ``child``/``enqueue`` span, or the user's);
        without one, a short root span ``start NAME`` or ``enqueue NAME`` made here."""
        span = trace.get_current_span()
        if not span.get_span_context().is_valid:
            attributes: dict[str, Any] = {WORKFLOW_ID: workflow_id, WORKFLOW_NAME: name}
            if queue is not None:
                attributes[QUEUE] = queue
            span = self._tracer.start_span(
                f"{'start' if queue is None else 'enqueue'} {name}",
                kind=SpanKind.PRODUCER if queue is not None else SpanKind.INTERNAL,
                attributes=attributes,
            )
            span.end()
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(span))
        return {"traceparent": carrier["traceparent"]} if "traceparent" in carrier else {}

    # ------------------------------------------------------------- runs

    def run_started(self, ctx: WorkflowContext) -> Any:
        telemetry = ctx.telemetry or {}
        traceparent = telemetry.get("traceparent")
        parent = _W3C.extract({"traceparent": traceparent}) if traceparent else None
        origin = telemetry.get("origin")
        queue = telemetry.get("queue")
        attributes: dict[str, Any] = {
            WORKFLOW_ID: ctx.workflow_id,
            WORKFLOW_NAME: ctx.name,
            WORKFLOW_EPOCH: ctx.epoch,
            WORKFLOW_REPLAYED: len(ctx.recorded),
            RECOVERY: origin in RECOVERY_ORIGINS,
        }
        if origin is not None:
            attributes[ORIGIN] = origin
        if queue is not None:
            attributes[QUEUE] = queue
        span = self._tracer.start_span(
            f"workflow {ctx.name}",
            context=parent,
            kind=SpanKind.CONSUMER if origin == "queue" else SpanKind.INTERNAL,
            attributes=attributes,
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    def run_ended(self, ctx: WorkflowContext, token: Any, error: BaseException | None) -> None:
        span, attached = token
        if error is None:
            span.set_attribute(WORKFLOW_OUTCOME, "success")
        elif ctx.finished:
            span.set_attribute(WORKFLOW_OUTCOME, "error")
            _failed(span, error)
        else:
            outcome = _stopped(ctx, error)
            span.set_attribute(WORKFLOW_OUTCOME, outcome)
            if outcome == "crashed":
                _failed(span, error)
        otel_context.detach(attached)
        span.end()

    # ------------------------------------------------------------- steps

    def step_started(self, ctx: WorkflowContext, position: int, name: str, kind: str) -> Any:
        span = self._tracer.start_span(
            f"{kind} {name}",
            attributes={
                WORKFLOW_ID: ctx.workflow_id,
                WORKFLOW_NAME: ctx.name,
                STEP_NAME: name,
                STEP_NUMBER: position,
                STEP_KIND: kind,
                STEP_ATTEMPT: 1,
            },
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    def step_ended(
        self,
        ctx: WorkflowContext,
        position: int,
        name: str,
        kind: str,
        token: Any,
        error: BaseException | None,
    ) -> None:
        span, attached = token
        if isinstance(error, Parked):
            span.add_event("durably.parked")  # released its thread; woken and replayed
        elif error is not None:
            _failed(span, error)
        otel_context.detach(attached)
        span.end()

    def step_failed(self, report: StepFailed) -> None:
        # Runs where the step's span is current (the driver, in the step's context).
        span = trace.get_current_span()
        attributes: dict[str, Any] = {
            STEP_ATTEMPT: report.attempt,
            "exception.type": type(report.error).__qualname__,
            "exception.message": str(report.error),
        }
        if report.retry_in is not None:
            attributes["durably.retry_in"] = report.retry_in
            span.set_attribute(STEP_ATTEMPT, report.attempt + 1)
        span.add_event("durably.step.failed", attributes)


def _failed(span: trace.Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _stopped(ctx: WorkflowContext, error: BaseException) -> str:
    """How a run ended that recorded no outcome of its own."""
    if isinstance(error, Parked):
        return "parked"
    if ctx.cancelled or isinstance(error, WorkflowCancelled):
        return "cancelled"
    if isinstance(error, LostOwnership):
        return "lost_ownership"
    return "crashed"
