"""Starts gated workflows directly (no queue) under ``$DURABLY_APP_VERSION``, waits
until each one's step runs, says so, then blocks until it is killed.

``python starter.py KEY...`` with the environment of ``queueprocs.worker_app``.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from queueprocs.jobs import effect_lines
from queueprocs.worker_app import app, jobs
from support import wait_until


def main(keys: list[str]) -> None:
    app.launch(queues=[])
    for key in keys:
        jobs.gated.options(id=key).start(key)
    effects = Path(os.environ["QP_EFFECTS"])
    for key in keys:
        wait_until(
            lambda key=key: ("start", key, os.getpid()) in effect_lines(effects),  # type: ignore[misc]
            what=f"step of {key} running",
        )
    print(f"started {' '.join(keys)} as {app.app_version}", flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main(sys.argv[1:])
