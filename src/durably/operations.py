"""Durable operations called inside a workflow: sleep, messages, events and streams.

``durably.sleep``, ``recv``, ``set_event``, ``write_stream``, ``close_stream``, each
with an ``_async`` twin. Each takes the next step number when it is called and is
recorded, so a replay returns at once what the first run saw. Also what a workflow or
step knows of itself: ``workflow_id`` and ``step_key``; and the branches of a code
upgrade: ``patched`` and ``deprecate_patch``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from durably.errors import NotInWorkflow
from durably.execution.context import (
    WorkflowContext,
    active_workflow,
    current_workflow,
    in_step,
    require_workflow,
)
from durably.execution.observe import observed
from durably.execution.patches import check_patch_name, deprecate
from durably.execution.patches import patched as patched_protocol
from durably.execution.waits import (
    check_key,
    check_topic,
)
from durably.execution.waits import (
    recv as recv_protocol,
)
from durably.execution.waits import (
    set_event as set_event_protocol,
)
from durably.execution.waits import (
    sleep as sleep_protocol,
)
from durably.execution.waits import (
    write_stream as write_stream_protocol,
)
from durably.options import check_seconds
from durably.runtime.drivers import drive_async, drive_sync
from durably.twins import Job


def workflow_id() -> str:
    """The ID of the workflow running here, in its body or in one of its steps."""
    ctx = current_workflow.get()
    if ctx is None:
        raise NotInWorkflow("durably.workflow_id() can only be called inside a workflow or step")
    return ctx.workflow_id


def step_key() -> str:
    """An idempotency key for the step running here: ``"<workflow id>:<step number>"``.

    It is the same on every attempt of the step (retries, and runs again after a crash
    or a takeover), and differs between steps and workflows: pass it to a payment API or
    any other external call that deduplicates by key. A fork has a new ID, so new keys.
    """
    ctx = current_workflow.get()
    position = in_step.get()
    if ctx is None or position is None:
        raise NotInWorkflow(
            "durably.step_key() can only be called inside a step (a workflow's body is "
            "replayed, not retried: make the external call from a step)"
        )
    return f"{ctx.workflow_id}:{position}"


# Each pair of twins builds one Job, naming itself for the error raised outside a
# workflow; the step number is taken when the twin is called (for the async twin:
# when it starts running), as a replay expects.


def sleep(seconds: float) -> None:
    """Sleep durably: after a restart only the remaining time is slept.

    Outside a workflow (or inside a step) this is a plain ``time.sleep``.
    """
    job, seconds = _sleep(seconds)
    if job is None:
        time.sleep(seconds)
    else:
        drive_sync(*job)


async def sleep_async(seconds: float) -> None:
    """Async twin of ``sleep``."""
    job, seconds = _sleep(seconds)
    if job is None:
        await asyncio.sleep(seconds)
    else:
        await drive_async(*job)


def _sleep(seconds: float) -> tuple[Job[None] | None, float]:
    """The durable sleep to run, if called in a workflow, and the checked seconds."""
    seconds = check_seconds(seconds, "seconds")
    ctx = active_workflow()
    if ctx is None:
        return None, seconds
    position = ctx.take_step()
    protocol = sleep_protocol(ctx, position, seconds)
    if ctx.engine.observers:
        protocol = observed(ctx, position, "sleep", "sleep", protocol)
    return (ctx.engine, protocol), seconds


def recv(topic: str | None = None, timeout: float = 60) -> Any:
    """Receive the oldest unconsumed message of ``topic`` sent to this workflow
    (``app.send``), in the workflow's body.

    Returns None when ``timeout`` seconds (durable: it survives restarts) pass first; a
    long wait parks the workflow (docs/concepts/parking.md). The message comes back as
    plain JSON: no type hint rebuilds it.
    """
    return drive_sync(*_recv("recv", topic, timeout))


async def recv_async(topic: str | None = None, timeout: float = 60) -> Any:
    """Async twin of ``recv``."""
    return await drive_async(*_recv("recv_async", topic, timeout))


def _recv(operation: str, topic: str | None, timeout: float) -> Job[Any]:
    topic, timeout = check_topic(topic), check_seconds(timeout, "timeout")
    ctx = require_workflow(operation)
    position = ctx.take_step()
    protocol = recv_protocol(ctx, position, topic, timeout)
    if ctx.engine.observers:
        protocol = observed(ctx, position, topic or "recv", "recv", protocol)
    return ctx.engine, protocol


def set_event(key: str, value: Any) -> None:
    """Publish ``value`` as the latest value of this workflow's event ``key``, for
    ``app.get_event`` to read. In a step it is set as part of that step."""
    drive_sync(*_set_event("set_event", key, value))


async def set_event_async(key: str, value: Any) -> None:
    """Async twin of ``set_event``."""
    await drive_async(*_set_event("set_event_async", key, value))


def _set_event(operation: str, key: str, value: Any) -> Job[None]:
    """Set from a workflow (a new operation of its own) or from a step (part of the step)."""
    check_key(key)
    ctx = current_workflow.get()
    if ctx is None:
        raise NotInWorkflow(f"durably.{operation}() can only be called inside a workflow or step")
    data = ctx.engine.codec.dumps(value)  # before anything is written
    step_position = in_step.get()
    if step_position is not None:
        return ctx.engine, set_event_protocol(ctx, step_position, key, data, in_step=True)
    return ctx.engine, set_event_protocol(ctx, ctx.take_step(), key, data, in_step=False)


def write_stream(key: str, value: Any) -> None:
    """Append ``value`` to this workflow's stream ``key`` (read with ``app.read_stream``)."""
    drive_sync(*_write_stream("write_stream", key, value))


async def write_stream_async(key: str, value: Any) -> None:
    """Async twin of ``write_stream``."""
    await drive_async(*_write_stream("write_stream_async", key, value))


def close_stream(key: str) -> None:
    """Close this workflow's stream ``key``: readers stop after its last entry."""
    drive_sync(*_write_stream("close_stream", key, None, closed=True))


async def close_stream_async(key: str) -> None:
    """Async twin of ``close_stream``."""
    await drive_async(*_write_stream("close_stream_async", key, None, closed=True))


def _write_stream(operation: str, key: str, value: Any, *, closed: bool = False) -> Job[None]:
    ctx = require_workflow(operation)
    check_key(key)
    data = None if closed else ctx.engine.codec.dumps(value)
    return ctx.engine, write_stream_protocol(ctx, ctx.take_step(), key, data, closed=closed)


def patched(name: str) -> bool:
    """Whether this workflow runs the new code of the change ``name``.

    Write ``if durably.patched("new-pricing"): <new code> else: <old code>`` in a
    workflow's body. A run that reaches the call past its recorded history records a
    marker (an operation of kind ``patch``) and gets True; its replays find the marker
    and get True again. A replay of an execution recorded before the change finds
    something else there and gets False, and no step number is taken: the old code's
    operations replay under the numbers they were recorded with. See docs/upgrades.md.
    """
    return drive_sync(*_patched("patched", name))


async def patched_async(name: str) -> bool:
    """Async twin of ``patched`` (the marker is written without blocking the loop)."""
    return await drive_async(*_patched("patched_async", name))


def _patched(operation: str, name: str) -> Job[bool]:
    # Decided here, when called (for the async twin: when it starts running).
    name = check_patch_name(name)
    ctx = _patch_workflow(operation)
    return ctx.engine, patched_protocol(ctx, name)


def deprecate_patch(name: str) -> None:
    """For code whose old branch of change ``name`` was removed: the marker a run of
    ``patched(name)`` recorded here is skipped; an execution without it replays as it
    is. Writes nothing, so executions recorded either way (and new ones) all run."""
    name = check_patch_name(name)
    deprecate(_patch_workflow("deprecate_patch"), name)


async def deprecate_patch_async(name: str) -> None:
    """Async twin of ``deprecate_patch`` (it does no I/O; here for symmetry)."""
    name = check_patch_name(name)
    deprecate(_patch_workflow("deprecate_patch_async"), name)


def _patch_workflow(operation: str) -> WorkflowContext:
    """The workflow whose body calls ``operation``; a step's code is retried, not
    replayed, so it has no recorded history to branch on."""
    ctx = active_workflow()
    if ctx is None:
        where = "in a step" if in_step.get() is not None else "outside a workflow"
        raise NotInWorkflow(
            f"durably.{operation}() was called {where}; it can only be called in a "
            f"workflow's body, where it decides which code a replay takes"
        )
    return ctx
