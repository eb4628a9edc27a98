"""A worker process: ``python tests/procs/worker.py '<json config>'``.

It builds the app of ``procs.workflows``, launches it (which recovers its executor's
unfinished workflows), prints ``{"event": "ready", ...}`` and then follows commands, one
JSON object per stdin line; every answer is one JSON line on stdout:

- ``{"op": "start", "wf": name, "id": id, "args": [...]}``: start in the background;
  answers ``started``, and ``local`` once this process's own run of it settles (with
  the exception type when it failed, e.g. ``LostOwnership``).
- ``{"op": "run", ...}``: call the workflow and answer ``result`` or ``error``.
- ``{"op": "wait", "id": id, "timeout": s}``: ``handle(id).result()``, answered alike.
- ``{"op": "exit"}`` or end of input: shut down and exit.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

# Import the workflows under the same module name as the tests do (``procs.workflows``).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procs.workflows import build

_out = threading.Lock()


def emit(**event: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def outcome(kind: str, workflow_id: str, call: Any) -> None:
    try:
        value = call()
    except BaseException as exc:
        emit(event="error", kind=kind, id=workflow_id, type=type(exc).__name__, message=str(exc))
    else:
        emit(event="result", kind=kind, id=workflow_id, value=value)


def main() -> None:
    config = json.loads(sys.argv[1])
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    app, workflows = build(
        config["url"],
        config["schema"],
        executor_id=config["executor_id"],
        lease=config["lease"],
        effects=config["effects"],
        gate_dir=config.get("gate_dir"),
        hold=config.get("hold", ()),
        max_recovery_attempts=config.get("max_recovery_attempts", 2),
    )
    app.launch()
    emit(event="ready", pid=os.getpid(), executor_id=app.executor_id)

    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "exit":
            break
        if op == "start":
            wf = workflows[cmd["wf"]].options(id=cmd["id"])
            handle = wf.start(*cmd.get("args", []))
            local = app.engine.local_future(handle.id)
            emit(event="started", id=handle.id, local=local is not None)
            if local is not None:

                def watch(fut: Any = local, wid: str = handle.id) -> None:
                    error = fut.exception()
                    emit(
                        event="local", id=wid, type=None if error is None else type(error).__name__
                    )

                threading.Thread(target=watch, daemon=True).start()
        elif op == "run":
            wf = workflows[cmd["wf"]].options(id=cmd["id"])
            args = cmd.get("args", [])
            threading.Thread(
                target=outcome, args=("run", cmd["id"], lambda w=wf, a=args: w(*a)), daemon=True
            ).start()
        elif op == "wait":
            wid, timeout = cmd["id"], cmd.get("timeout", 30.0)
            threading.Thread(
                target=outcome,
                args=("wait", wid, lambda w=wid, t=timeout: app.handle(w).result(timeout=t)),
                daemon=True,
            ).start()
        else:
            emit(event="bad-command", cmd=cmd)
    app.shutdown(grace=1.0)
    emit(event="bye")
    # Held steps may still be waiting at their gate in daemon threads: leave now.
    os._exit(0)


if __name__ == "__main__":
    main()
