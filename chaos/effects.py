"""Side effects of step bodies: each execution of a body leaves one row in
``chaos.effects`` (workflow, step, epoch, pid, when it started and ended, a label).

The row is inserted at the end of the body through a connection of the worker's own
(never durably's), retried through outages until it lands; a token per execution makes
the retries insert it once. What the checks read from these rows is what really ran.
"""

# SQL here names the suite's schemas, module constants (never input).
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from chaos.config import CHAOS_SCHEMA
from chaos.retry import Conn
from durably.execution.context import current_workflow, in_step

log = logging.getLogger("chaos.effects")

# A body's row may wait this long for the database (longer than any planned outage).
INSERT_DEADLINE = 300.0


@dataclass(frozen=True)
class Body:
    """The step body running here: its workflow, position and the epoch of its run."""

    workflow_id: str
    step: int | None
    epoch: int | None


def current_body() -> Body:
    ctx = current_workflow.get()
    if ctx is None:
        return Body("(outside)", None, None)
    return Body(ctx.workflow_id, in_step.get(), ctx.epoch)


class Recorder:
    """Records body executions of one worker process (thread-safe)."""

    def __init__(self, url: str, slot: int) -> None:
        self.url = url
        self.application_name = f"chaos-effects-{slot}"
        self._local = threading.local()

    def _conn(self) -> Conn:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Conn(self.url, self.application_name)
        return conn

    def insert(self, body: Body, started: float, ended: float, label: str) -> None:
        deadline = time.monotonic() + INSERT_DEADLINE
        self._conn().execute(
            f"""INSERT INTO {CHAOS_SCHEMA}.effects
                (token, workflow_id, step, epoch, pid, started_at, ended_at, label)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (token) DO NOTHING""",
            (
                uuid.uuid4().hex, body.workflow_id, body.step, body.epoch, os.getpid(),
                started, ended, label,
            ),
            deadline,
        )  # fmt: skip

    @contextlib.contextmanager
    def body(self, label: str) -> Iterator[Body]:
        """Around a sync body: time it, then record it (``<label>!fail`` if it raised)."""
        body = current_body()
        started = time.time()
        ok = False
        try:
            yield body
            ok = True
        finally:
            ended = time.time()
            self.insert(body, started, ended, label if ok else f"{label}!fail")

    @contextlib.asynccontextmanager
    async def body_async(self, label: str) -> AsyncIterator[Body]:
        """Around an async body; the insert runs in a thread, off the event loop."""
        body = current_body()
        started = time.time()
        ok = False
        try:
            yield body
            ok = True
        finally:
            ended = time.time()
            await asyncio.to_thread(
                self.insert, body, started, ended, label if ok else f"{label}!fail"
            )
