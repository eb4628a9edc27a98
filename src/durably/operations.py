"""Durable operations called inside a workflow: ``durably.sleep``, ``recv``, ``set_event``,
``write_stream``, ``close_stream`` (each with an ``_async`` twin).

Each takes the next step number when it is called and is recorded, so a replay returns
at once what the first run saw.
"""

from __future__ import annotations

from typing import Any

from durably.errors import NotInWorkflow
from durably.execution.context import current_workflow, in_step, require_workflow
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


def sleep(seconds: float) -> None:
    """Sleep durably: after a restart only the remaining time is slept.

    Outside a workflow (or inside a step) this is a plain ``time.sleep``.
    """
    seconds = check_seconds(seconds, "seconds")
    ctx = _workflow_or_none()
    if ctx is None:
        import time

        time.sleep(seconds)
        return
    drive_sync(ctx.engine, sleep_protocol(ctx, ctx.take_step(), seconds))


async def sleep_async(seconds: float) -> None:
    """Async twin of ``sleep``."""
    seconds = check_seconds(seconds, "seconds")
    ctx = _workflow_or_none()
    if ctx is None:
        import asyncio

        await asyncio.sleep(seconds)
        return
    await drive_async(ctx.engine, sleep_protocol(ctx, ctx.take_step(), seconds))


def recv(topic: str | None = None, timeout: float = 60) -> Any:
    """Receive the oldest unconsumed message of ``topic`` sent to this workflow.

    Returns None when ``timeout`` (durable: it survives restarts) passes first.
    """
    topic, timeout = check_topic(topic), check_seconds(timeout, "timeout")
    ctx = require_workflow("recv")
    return drive_sync(ctx.engine, recv_protocol(ctx, ctx.take_step(), topic, timeout))


async def recv_async(topic: str | None = None, timeout: float = 60) -> Any:
    """Async twin of ``recv``."""
    topic, timeout = check_topic(topic), check_seconds(timeout, "timeout")
    ctx = require_workflow("recv_async")
    return await drive_async(ctx.engine, recv_protocol(ctx, ctx.take_step(), topic, timeout))


def set_event(key: str, value: Any) -> None:
    """Publish ``value`` as the latest value of this workflow's event ``key``."""
    ctx, position, inside_step, data = _event_args(key, value, "set_event")
    drive_sync(ctx.engine, set_event_protocol(ctx, position, key, data, in_step=inside_step))


async def set_event_async(key: str, value: Any) -> None:
    """Async twin of ``set_event``."""
    ctx, position, inside_step, data = _event_args(key, value, "set_event_async")
    await drive_async(ctx.engine, set_event_protocol(ctx, position, key, data, in_step=inside_step))


def write_stream(key: str, value: Any) -> None:
    """Append ``value`` to this workflow's stream ``key`` (read with ``app.read_stream``)."""
    ctx = require_workflow("write_stream")
    check_key(key)
    data = ctx.engine.codec.dumps(value)
    drive_sync(ctx.engine, write_stream_protocol(ctx, ctx.take_step(), key, data, closed=False))


async def write_stream_async(key: str, value: Any) -> None:
    """Async twin of ``write_stream``."""
    ctx = require_workflow("write_stream_async")
    check_key(key)
    data = ctx.engine.codec.dumps(value)
    await drive_async(
        ctx.engine, write_stream_protocol(ctx, ctx.take_step(), key, data, closed=False)
    )


def close_stream(key: str) -> None:
    """Close this workflow's stream ``key``: readers stop after its last entry."""
    ctx = require_workflow("close_stream")
    check_key(key)
    drive_sync(ctx.engine, write_stream_protocol(ctx, ctx.take_step(), key, None, closed=True))


async def close_stream_async(key: str) -> None:
    """Async twin of ``close_stream``."""
    ctx = require_workflow("close_stream_async")
    check_key(key)
    await drive_async(
        ctx.engine, write_stream_protocol(ctx, ctx.take_step(), key, None, closed=True)
    )


def _workflow_or_none() -> Any:
    from durably.execution.context import active_workflow

    return active_workflow()


def _event_args(key: str, value: Any, operation: str) -> tuple[Any, int, bool, str]:
    """Where an event is set from: a workflow (a new operation) or a step (its own)."""
    check_key(key)
    ctx = current_workflow.get()
    if ctx is None:
        raise NotInWorkflow(f"durably.{operation}() can only be called inside a workflow or step")
    data = ctx.engine.codec.dumps(value)  # before anything is written
    step_position = in_step.get()
    if step_position is not None:
        return ctx, step_position, True, data
    return ctx, ctx.take_step(), False, data
