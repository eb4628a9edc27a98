"""Workflows and queues shared, under the same names, by the tests and worker processes.

The one workflow, ``queueprocs.gated(key)``, runs one step that appends
``"start <key> <pid>"`` to the effects file, waits until the file ``gates/<key>``
exists, appends ``"end <key> <pid>"`` and returns where and when it ran. A test decides
when each run may end (and can kill its worker while it waits).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import durably

GATE_TIMEOUT = 60.0

# Every worker declares every queue; each test uses its own.
QUEUES: dict[str, dict[str, Any]] = {
    "fleet": {"concurrency": 3, "worker_concurrency": 2},
    "crash": {"concurrency": 1},
    "percap": {"worker_concurrency": 2},
    "cli": {},
    "cli-other": {},
}


@dataclass
class Jobs:
    app: durably.App
    gated: durably.Workflow[[str], dict[str, Any]]
    queues: dict[str, durably.Queue]


def note(effects: Path, line: str) -> None:
    """Append one line to the effects file in one write (O_APPEND: lines never mix)."""
    fd = os.open(effects, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def effect_lines(effects: Path) -> list[tuple[str, str, int]]:
    """The (what, key, pid) lines written so far."""
    if not effects.exists():
        return []
    out = []
    for line in effects.read_text().splitlines():
        what, key, pid = line.split()
        out.append((what, key, int(pid)))
    return out


def register(app: durably.App, gates: Path, effects: Path) -> Jobs:
    """Declare the shared workflow and queues on ``app``."""

    @app.step(name="queueprocs.wait_gate")
    def wait_gate(key: str) -> dict[str, Any]:
        note(effects, f"start {key} {os.getpid()}")
        started = time.time()
        deadline = time.monotonic() + GATE_TIMEOUT
        while not (gates / key).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {key} never opened")
            time.sleep(0.01)
        note(effects, f"end {key} {os.getpid()}")
        return {"key": key, "pid": os.getpid(), "start": started, "end": time.time()}

    @app.workflow(name="queueprocs.gated")
    def gated(key: str) -> dict[str, Any]:
        return wait_gate(key)

    queues = {name: app.queue(name, **limits) for name, limits in QUEUES.items()}
    return Jobs(app, gated, queues)
