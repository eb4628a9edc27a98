"""The telemetry hooks: what the engine tells observers (tracing, metrics) and when.

An ``Observer`` hears of workflow runs, steps, claims and commit batches; every method
is a no-op here, and the implementations (``durably.telemetry``: OpenTelemetry,
Prometheus) override what they need. The engine holds a tuple of observers, empty by
default, and every call site checks it first (``if engine.observers:``), so an app
without telemetry pays one truth test per hook point and nothing else.

What crosses processes rides in the workflow's stored inputs, under the key
``"telemetry"`` (``{"traceparent": ..., "at": <unix time>}``): written when the workflow
is started or enqueued by a process with observers, read back when any worker claims it
(queue, wake-up, recovery, takeover), so its runs join one trace wherever they run.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from durably.execution.context import WorkflowContext
    from durably.execution.effects import Protocol, StepFailed
    from durably.execution.host import Host

T = TypeVar("T")

# The key of the stored inputs that carries telemetry across processes.
INPUTS_KEY = "telemetry"

# Why a run began, in ``WorkflowContext.telemetry["origin"]``: None (started by this
# process), "queue" (claimed from its queue), "wakeup" (woken from a wait in the
# database), or the recovery kinds "own", "takeover", "abandoned", "failover".
RECOVERY_ORIGINS = frozenset({"own", "takeover", "abandoned", "failover"})


class Observer:
    """Hears what the engine does. Subclass and override; every hook is a no-op here.

    Hooks run in the thread or task of what they describe (a step's hooks in the task
    that runs the step), so an observer may make its own context current between a
    ``*_started`` and the matching ``*_ended`` (OpenTelemetry does). A hook must not
    raise: the engine does not catch what it raises.
    """

    def attach(self, host: Host) -> None:
        """The observer now serves this engine (an app's, when it connects)."""

    def stamp(self, workflow_id: str, name: str, kind: str, queue: str | None) -> dict[str, Any]:
        """A workflow is being started (``kind`` "start", "child") or enqueued ("enqueue")
        by this process: what to store with it for the processes that run it."""
        return {}

    def run_started(self, ctx: WorkflowContext) -> Any:
        """A run of a workflow body begins here; the value is handed to ``run_ended``."""
        return None

    def run_ended(self, ctx: WorkflowContext, token: Any, error: BaseException | None) -> None:
        """The run ended: its outcome recorded (``ctx.finished``), or stopped by ``error``
        (a wait in the database, cancellation, lost ownership, a crash of the body...)."""

    def step_started(self, ctx: WorkflowContext, position: int, name: str, kind: str) -> Any:
        """A durable operation of ``kind`` (step, transaction, child, enqueue, sleep, recv)
        runs live at ``position`` (replayed ones are not reported); the value goes to
        ``step_ended``."""
        return None

    def step_ended(
        self,
        ctx: WorkflowContext,
        position: int,
        name: str,
        kind: str,
        token: Any,
        error: BaseException | None,
    ) -> None:
        """The operation is recorded, or raised ``error``."""

    def step_failed(self, report: StepFailed) -> None:
        """An attempt of a step body raised (``report.retry_in``: the next attempt's delay,
        None when this error is the step's outcome)."""

    def claimed(self, ctx: WorkflowContext, origin: str, queue: str | None) -> None:
        """This executor claimed a workflow to run: ``origin`` says why (see
        ``RECOVERY_ORIGINS``, "queue", "wakeup"); ``ctx.telemetry`` holds what was stored."""

    def commit_batch(self, size: int) -> None:
        """Group commit ran ``size`` writes in one transaction."""


Observers = tuple[Observer, ...]

# The telemetry stamped by the last start in this thread or task: (workflow ID, marks).
# A run started right after in the same context (inline, or handed to a thread by
# ``Engine.run_in_background``, which adopts it first) takes its trace from here.
_stamped: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "durably_stamped", default=None
)


def stamp(
    engine: Host, workflow_id: str, name: str, kind: str, inputs: str, queue: str | None = None
) -> str:
    """``inputs`` with the observers' telemetry for ``workflow_id`` added (see the module)."""
    marks: dict[str, Any] = {}
    for observer in engine.observers:
        marks.update(observer.stamp(workflow_id, name, kind, queue))
    marks["at"] = time.time()
    _stamped.set((workflow_id, marks))
    if not inputs.endswith("}"):  # not an object: leave it as it is
        return inputs
    return f'{inputs[:-1]},"{INPUTS_KEY}":{json.dumps(marks)}}}'


def stored(inputs: Any) -> dict[str, Any]:
    """The telemetry stored in a workflow's inputs (as read: a dict or JSON text)."""
    if isinstance(inputs, str):
        if f'"{INPUTS_KEY}"' not in inputs:
            return {}
        try:
            inputs = json.loads(inputs)
        except ValueError:
            return {}
    found = inputs.get(INPUTS_KEY) if isinstance(inputs, dict) else None
    return dict(found) if isinstance(found, dict) else {}


def adopt(ctx: WorkflowContext) -> None:
    """Give a run started by this process the telemetry its start stamped here."""
    if ctx.telemetry is not None:
        return
    last = _stamped.get()
    ctx.telemetry = dict(last[1]) if last is not None and last[0] == ctx.workflow_id else {}


def claimed(
    observers: Observers, ctx: WorkflowContext, inputs: Any, origin: str, queue: str | None
) -> None:
    """A claim gave this executor ``ctx``: restore its stored telemetry, tell observers."""
    ctx.telemetry = {**stored(inputs), "origin": origin, "queue": queue}
    for observer in observers:
        observer.claimed(ctx, origin, queue)


def run_started(observers: Observers, ctx: WorkflowContext) -> list[Any]:
    adopt(ctx)
    return [observer.run_started(ctx) for observer in observers]


def run_ended(
    observers: Observers, ctx: WorkflowContext, tokens: list[Any], error: BaseException | None
) -> None:
    for observer, token in zip(reversed(observers), reversed(tokens), strict=True):
        observer.run_ended(ctx, token, error)


def step_failed(observers: Observers, report: StepFailed) -> None:
    for observer in observers:
        observer.step_failed(report)


def batches(observers: Sequence[Observer]) -> Callable[[int], None] | None:
    """What group commit calls with each batch's size (None: nobody listens)."""
    if not observers:
        return None
    listening = tuple(observers)

    def on_batch(size: int) -> None:
        for observer in listening:
            observer.commit_batch(size)

    return on_batch


def observed(
    ctx: WorkflowContext, position: int, name: str, kind: str, protocol: Protocol[T]
) -> Protocol[T]:
    """``protocol`` (a durable operation at ``position``) reported to the observers of
    its engine when it runs live; a replayed one passes through unreported."""
    if position in ctx.recorded:
        return (yield from protocol)
    observers = ctx.engine.observers
    tokens = [observer.step_started(ctx, position, name, kind) for observer in observers]
    try:
        result = yield from protocol
    except BaseException as exc:
        for observer, token in zip(reversed(observers), reversed(tokens), strict=True):
            observer.step_ended(ctx, position, name, kind, token, exc)
        raise
    for observer, token in zip(reversed(observers), reversed(tokens), strict=True):
        observer.step_ended(ctx, position, name, kind, token, None)
    return result
