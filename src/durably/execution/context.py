"""What a running workflow knows about itself, held in a context variable."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durably.errors import NotInWorkflow

if TYPE_CHECKING:
    from durably.execution.host import Host


@dataclass(frozen=True, slots=True)
class Recorded:
    """One operation recorded by an earlier run of the workflow."""

    step: int
    name: str
    kind: str
    output: Any
    error: Any
    child_id: str | None


class WorkflowContext:
    """The state of one execution of one workflow: identity, ownership and replay log."""

    __slots__ = (
        "bodies", "cancelled", "deadline", "engine", "epoch", "exited", "finished", "gone",
        "lease_generation", "name", "next_step", "predecessor", "recorded", "superseded", "task",
        "telemetry", "workflow_id",
    )  # fmt: skip

    def __init__(
        self,
        engine: Host,
        workflow_id: str,
        name: str,
        epoch: int,
        recorded: dict[int, Recorded] | None = None,
        deadline: datetime | None = None,
        lease_generation: int = 0,
    ) -> None:
        self.engine = engine
        self.workflow_id = workflow_id
        self.name = name
        self.epoch = epoch
        self.recorded = recorded or {}
        self.next_step = 1
        # Absolute timeout (wf.options(timeout=...)), and whether a cancel reached us.
        self.deadline = deadline
        self.cancelled = False
        # Set once this run recorded the workflow's outcome.
        self.finished = False
        self.task: asyncio.Task[Any] | None = None
        # The executor's lease generation when this run last knew it owned the workflow
        # (taken before the statement that gave it the workflow).
        self.lease_generation = lease_generation
        # Set when a newer run of the same workflow was started in this process; the
        # newer run waits for this one to exit (``predecessor``, ``exited``).
        self.superseded = False
        self.predecessor: WorkflowContext | None = None
        # Made only when a newer run must wait for this one (under the engine's lock).
        self.exited: threading.Event | None = None
        self.gone = False  # this run has exited
        # Step bodies of this run going now (under the engine's lock): a body started in
        # a task of asyncio.gather may outlive its run, and a newer run waits for it too.
        self.bodies = 0
        # What telemetry knows of this run (trace context, why it began): set only when
        # the engine has observers (see ``execution.observe``).
        self.telemetry: dict[str, Any] | None = None

    def take_step(self) -> int:
        """Number the next durable operation; called when it is called, not when it runs."""
        number = self.next_step
        self.next_step += 1
        return number

    def peek(self) -> Recorded | None:
        """What an earlier run recorded at the next position, without taking it (None:
        nothing). ``durably.patched`` looks before it decides whether to take a step."""
        return self.recorded.get(self.next_step)

    def past_history(self) -> bool:
        """Whether the next position is past every operation an earlier run recorded:
        from there on this run is live, not a replay."""
        return self.next_step > max(self.recorded, default=0)


current_workflow: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "durably_workflow", default=None
)
# The position of the step whose body runs here: durable calls inside it are plain calls.
in_step: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "durably_in_step", default=None
)
# The name of the step whose body runs here (for log records: ``durably.log_context``).
step_name: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "durably_step_name", default=None
)


def active_workflow() -> WorkflowContext | None:
    """The workflow whose body is running here, or None (outside, or inside a step)."""
    if in_step.get() is not None:
        return None
    return current_workflow.get()


def require_workflow(operation: str) -> WorkflowContext:
    """The running workflow, or a clear error naming the operation that needs one."""
    ctx = active_workflow()
    if ctx is None:
        if in_step.get() is not None:
            # A step's body may run more than once; only the workflow's body is replayed
            # in order, so only it may record this.
            raise NotInWorkflow(
                f"durably.{operation}() was called in a step; call it from the body of the "
                f"workflow (with a value the step returned), which records it once"
            )
        raise NotInWorkflow(f"durably.{operation}() can only be called inside a workflow")
    return ctx
