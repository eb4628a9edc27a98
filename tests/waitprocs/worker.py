"""A worker process: ``python tests/waitprocs/worker.py '<json config>'``.

Config: url, schema, executor_id (optional), lease, park_after, poll_interval, effects
(a file each step appends "<label> <pid>" to), and ``mode``:

- ``"start"``: launch, start workflow ``wf`` with ``id`` and ``args``, print
  ``{"event": "started"}``, wait for its result, print ``{"event": "done", "value": ...}``.
- ``"recover"``: launch (which claims this executor's unfinished workflows at once),
  print ``{"event": "ready"}``, wait for workflow ``id``, print ``done``.

Every printed line also carries ``"t"``: time.time() when it was printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import durably


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps({**event, "t": time.time()}) + "\n")
    sys.stdout.flush()


def build(config: dict[str, Any]) -> tuple[durably.App, dict[str, durably.Workflow[Any, Any]]]:
    app = durably.App(
        config["url"],
        schema=config["schema"],
        executor_id=config.get("executor_id"),
        lease=config.get("lease", 30.0),
        park_after=config.get("park_after", 10.0),
        poll_interval=config.get("poll_interval", 5.0),
    )
    effects = config.get("effects")

    def effect(label: str) -> None:
        if effects:
            fd = os.open(effects, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, f"{label} {os.getpid()}\n".encode())
            finally:
                os.close(fd)

    @app.step(name="wp.before")
    def before() -> int:
        effect("before")
        return os.getpid()

    @app.step(name="wp.after")
    def after() -> int:
        effect("after")
        return os.getpid()

    @app.workflow(name="wp.sleeper")
    def sleeper(seconds: float) -> list[int]:
        first = before()
        durably.sleep(seconds)
        return [first, after()]

    @app.workflow(name="wp.waiter")
    def waiter(topic: str) -> list[Any]:
        return ["got", durably.recv(topic, timeout=60)]

    return app, {wf.name: wf for wf in (sleeper, waiter)}


def main() -> None:
    config = json.loads(sys.argv[1])
    app, workflows = build(config)
    app.launch()
    if config["mode"] == "start":
        handle = workflows[config["wf"]].options(id=config["id"]).start(*config.get("args", []))
        emit(event="started", pid=os.getpid())
    else:
        emit(event="ready", pid=os.getpid())
        handle = app.handle(config["id"])
    try:
        value = handle.result(timeout=60)
    except Exception as exc:
        emit(event="failed", type=type(exc).__name__, message=str(exc))
    else:
        emit(event="done", value=value)
    app.shutdown(grace=1.0)


if __name__ == "__main__":
    main()
