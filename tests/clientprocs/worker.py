"""A worker process for tests/test_client.py.

Run with ``PYTHONPATH=tests python -c "import clientprocs.worker as w; w.main()"``:
it launches the app, prints ``READY <pid>``, serves the queues until its stdin closes,
then shuts down and prints ``STOPPED``.

Configuration comes from the environment: ``CLIENTPROCS_URL``, ``CLIENTPROCS_SCHEMA``,
``CLIENTPROCS_EFFECTS`` (a file the ``greet`` step appends one line to per run) and
``CLIENTPROCS_POLL_INTERVAL`` (the app's fallback scan, default 5 s).
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import durably

app = durably.App(
    os.environ["CLIENTPROCS_URL"],
    schema=os.environ["CLIENTPROCS_SCHEMA"],
    poll_interval=float(os.environ.get("CLIENTPROCS_POLL_INTERVAL", "5")),
)
jobs = app.queue("jobs")
ranked = app.queue("ranked", priority=True, concurrency=1)
parts = app.queue("parts", partition_concurrency=1)


class Rejected(Exception):
    """An error type only the worker's code knows."""


@dataclass
class Point:
    x: int
    y: int


def _effect(line: str) -> None:
    path = os.environ.get("CLIENTPROCS_EFFECTS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)


@app.step(name="greet.effect")
def greet_effect(name: str) -> int:
    _effect(f"greet {name}")
    return os.getpid()


@app.workflow(name="greet")
def greet(name: str) -> str:
    greet_effect(name)
    return f"hello {name}"


@app.workflow(name="fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.workflow(name="fail_custom")
def fail_custom(message: str) -> None:
    raise Rejected(message)


@app.step(name="wait_msg.before")
def before() -> str:
    return "before"


@app.workflow(name="wait_msg")
def wait_msg(topic: str) -> list[Any]:
    before()
    return ["got", durably.recv(topic, timeout=60)]


@app.workflow(name="events")
def events() -> str:
    durably.set_event("stage", "started")
    go = durably.recv("go", timeout=60)
    durably.set_event("stage", "finished")
    durably.set_event("go", go)
    return "done"


@app.workflow(name="streamer")
def streamer(n: int) -> int:
    durably.write_stream("nums", 0)
    durably.recv("more", timeout=60)
    for i in range(1, n):
        durably.write_stream("nums", {"i": i})
    durably.close_stream("nums")
    return n


@app.step(name="slow_steps.step")
def token(i: int) -> str:
    return f"{i}-{uuid.uuid4().hex}"


@app.workflow(name="slow_steps")
def slow_steps(n: int) -> list[str]:
    return [token(i) for i in range(1, n + 1)]


@app.workflow(name="describe")
def describe(p: Point, at: datetime) -> dict[str, Any]:
    return {
        "types": [type(p).__name__, type(at).__name__],
        "point": Point(p.x * 10, p.y * 10),
        "later": at + timedelta(hours=1),
    }


def main() -> None:
    app.launch()
    print(f"READY {os.getpid()}", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    app.shutdown(grace=2.0)
    print("STOPPED", flush=True)
