"""The workload's workflows, steps, queues and cron schedule, registered on one App.

Every result is a deterministic function of the arguments (see ``chaos.shapes`` for the
expected values), and every step body records its execution (``chaos.effects``). The
workflows of transaction steps are in ``chaos.ledger``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from typing import Any

import durably
from chaos import ledger, shapes
from chaos.config import CRON_EXPR, CRON_NAME, LIMITED_CONCURRENCY, LIMITED_QUEUE, UNLIMITED_QUEUE
from chaos.effects import Recorder

# Every body takes a little time, so that overlaps in time can happen and be seen.
BODY_SECONDS = 0.02


class FirstAttempt(Exception):
    """Raised by the flaky step on its first attempt in this process."""


def register(app: durably.App, rec: Recorder) -> dict[str, durably.Workflow[Any, Any]]:
    """Declare everything on ``app``; returns the workflows by name."""
    app.queue(UNLIMITED_QUEUE)
    app.queue(LIMITED_QUEUE, concurrency=LIMITED_CONCURRENCY)
    tried: set[tuple[str, int | None]] = set()
    tried_lock = threading.Lock()

    @app.step(name="chaos.flaky", retries=3, interval=0.1, backoff=1.0)
    def flaky(v: int) -> int:
        with rec.body("flaky") as body:
            time.sleep(BODY_SECONDS)
            with tried_lock:
                first = (body.workflow_id, body.step) not in tried
                tried.add((body.workflow_id, body.step))
            if first:
                raise FirstAttempt(f"first attempt of {body.workflow_id} step {body.step}")
            return 2 * v

    @app.step(name="chaos.double_plus")
    def double_plus(x: int) -> int:
        with rec.body("double_plus"):
            time.sleep(BODY_SECONDS)
            return 2 * x + 1

    @app.step(name="chaos.inc")
    def inc(v: int) -> int:
        with rec.body("inc"):
            time.sleep(BODY_SECONDS)
            return v + 1

    @app.step(name="chaos.dbl")
    def dbl(v: int) -> int:
        with rec.body("dbl"):
            time.sleep(BODY_SECONDS)
            return v * 2

    @app.step(name="chaos.note")
    def note(value: Any) -> Any:
        with rec.body("note"):
            time.sleep(BODY_SECONDS)
            return value

    @app.step(name="chaos.value")
    def value(i: int) -> int:
        with rec.body("value"):
            time.sleep(BODY_SECONDS)
            return shapes.stream_values(i + 1)[i]

    @app.step(name="chaos.hold")
    def hold(i: int, ms: int) -> int:
        with rec.body("hold"):
            time.sleep(ms / 1000)
            return 2 * i

    @app.step(name="chaos.inc_async")
    async def inc_async(v: int) -> int:
        async with rec.body_async("inc_async"):
            await asyncio.sleep(BODY_SECONDS)
            return v + 1

    @app.step(name="chaos.stamp")
    def stamp(tick: str) -> str:
        with rec.body("stamp"):
            return tick

    @app.workflow(name=shapes.RETRY)
    def retry_wf(values: list[int]) -> int:
        return sum(flaky(v) for v in values)

    @app.workflow(name=shapes.CHILD)
    def child(x: int) -> int:
        return double_plus(x)

    @app.workflow(name=shapes.PARENT)
    def parent(first: int, n: int) -> int:
        total = child(first)  # runs here, as a child
        handles = [child.start(first + i) for i in range(1, n)]  # run in the background
        return total + sum(int(h.result()) for h in handles)

    @app.workflow(name=shapes.SLEEPER)
    def sleeper(seconds: float, v: int) -> int:
        a = inc(v)
        durably.sleep(seconds)
        return dbl(a)

    @app.workflow(name=shapes.RECEIVER)
    def receiver(n: int, timeout: float) -> dict[str, int]:
        total = count = 0
        for _ in range(n):
            message = durably.recv(shapes.TOPIC, timeout=timeout)
            if message is None:
                break
            total += int(message["v"])
            count += 1
        note(count)
        return {"sum": total, "count": count}

    @app.workflow(name=shapes.SENDER)
    def sender(target: str, items: list[dict[str, Any]]) -> int:
        for item in items:
            note(item["v"])
            app.send(target, item, topic=shapes.TOPIC)
        return len(items)

    @app.workflow(name=shapes.SETTER)
    def setter(val: str) -> str:
        note(val)
        durably.set_event(shapes.EVENT_KEY, val)
        note(val)
        return val

    @app.workflow(name=shapes.GETTER)
    def getter(target: str, timeout: float) -> Any:
        return note(app.get_event(target, shapes.EVENT_KEY, timeout=timeout))

    @app.workflow(name=shapes.WRITER)
    def writer(k: int) -> int:
        for i in range(k):
            durably.write_stream(shapes.STREAM_KEY, value(i))
        durably.close_stream(shapes.STREAM_KEY)
        return k

    @app.workflow(name=shapes.LIMITED)
    def limited(i: int, ms: int) -> int:
        return hold(i, ms)

    @app.workflow(name=shapes.ASYNC_PAIR)
    async def async_pair(a: int, b: int) -> int:
        x, y = await asyncio.gather(inc_async(a), inc_async(b))
        return x + y

    @app.scheduled(CRON_EXPR, name=CRON_NAME)
    def tick(scheduled_at: datetime) -> str:
        return stamp(scheduled_at.isoformat())

    flows: list[durably.Workflow[Any, Any]] = [
        retry_wf, child, parent, sleeper, receiver, sender, setter, getter, writer, limited,
        async_pair, tick, *ledger.register(app, rec),
    ]  # fmt: skip
    return {wf.name: wf for wf in flows}
