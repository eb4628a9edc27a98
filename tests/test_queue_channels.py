"""Work put on a queue is announced on that queue's own channel, never the schema's.

Every process of an app listens on the schema's channel (messages, events, outcomes,
cancellations); only those serving a queue listen on its channel, so an enqueue wakes
the queue's workers and nobody else: not the web process that enqueued with a Client,
not a worker of other queues. Notifications reach a listener in commit order, so a
message sent after an enqueue, read first on the schema's channel, shows the enqueue
said nothing there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

import durably
from durably.store.notifications import channel_for, queue_channel

DEADLINE = 30.0
QUEUE = "émails-队列"  # the SQL and Python hashes of the name must agree beyond ASCII


def listen(url: str, *channels: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    for channel in channels:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    return conn


def received_until(conn: psycopg.Connection[Any], last: str) -> list[tuple[str, str]]:
    """(channel, payload) of every notification up to the one whose payload is ``last``."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for notice in conn.notifies(timeout=deadline - time.monotonic()):
            seen.append((notice.channel, notice.payload))
            if notice.payload == last:
                return seen
    raise AssertionError(f"no notification {last!r} within {DEADLINE} s; got {seen}")


def test_enqueues_are_announced_on_the_queue_channel(
    pg_url: str, schema: str, make_app: Callable[..., durably.App]
) -> None:
    app = make_app()
    queue = app.queue(QUEUE)

    @app.workflow(name="job")
    def job(n: int) -> int:
        return n

    app.launch(queues=[])  # serves no queue: what is enqueued stays there
    schema_channel = channel_for(schema)
    ours = queue_channel(schema_channel, QUEUE)
    with listen(pg_url, schema_channel, ours) as conn, durably.Client(pg_url, schema=schema) as c:
        first = c.enqueue(QUEUE, "job", 1)
        later = c.enqueue(QUEUE, "job", 2, delay=3600)
        both = c.enqueue_many(QUEUE, "job", [(3,), (4,)])
        debounced = queue.debounce("key", 3600.0, job, 5)
        c.send(first.id, "after the enqueues")
        seen = received_until(conn, f"m:{first.id}")
        assert later.status() == "DELAYED" and debounced.status() == "DELAYED"
        assert [h.status() for h in (first, *both)] == ["ENQUEUED"] * 3
    on_schema = [payload for channel, payload in seen if channel == schema_channel]
    assert on_schema == [f"m:{first.id}"]
    on_queue = [payload for channel, payload in seen if channel == ours]
    assert on_queue[0] == f"q:{QUEUE}" and on_queue[2] == f"q:{QUEUE}"
    assert on_queue[1].startswith("t:") and on_queue[1].endswith(f":{QUEUE}")
    assert on_queue[3].startswith("t:") and len(on_queue) == 4


def test_a_queue_declared_after_launch_is_listened_to(
    pg_url: str, schema: str, make_app: Callable[..., durably.App]
) -> None:
    # No heartbeat survey or poll within the test: only the queue's notification (or the
    # look around the listener takes when it listens anew) can start the work.
    app = make_app(poll_interval=3600, lease=3600)

    @app.workflow(name="late_job")
    def late_job(n: int) -> int:
        return n * 2

    app.launch()
    app.queue("late")
    with durably.Client(pg_url, schema=schema) as client:
        assert client.enqueue("late", "late_job", 21).result(timeout=DEADLINE) == 42
