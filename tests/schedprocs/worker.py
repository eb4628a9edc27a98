"""A schedule worker: ``python tests/schedprocs/worker.py '<json config>'``.

It builds an App on the given URL and schema with its own executor ID, declares the
every-second schedule of ``schedprocs.workflows``, launches (which starts the scheduler),
prints ``{"event": "ready", ...}``, and runs until a line ``exit`` (or the end of its
input) arrives on stdin; then it shuts down and prints ``{"event": "bye"}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

# Import the workflows under the same module name as the tests do.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import durably
from schedprocs.workflows import declare


def main() -> None:
    config = json.loads(sys.argv[1])
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    # The scheduler says at debug level which ticks it started and which it found
    # started by another worker: the log shows the workers competing for each tick.
    logging.getLogger("durably").setLevel(logging.DEBUG)
    app = durably.App(
        config["url"],
        schema=config["schema"],
        executor_id=config["executor_id"],
        lease=config.get("lease", 2.0),
        poll_interval=config.get("poll_interval", 0.2),
    )
    declare(app, config["effects"])
    app.launch()
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if line.strip() == "exit":
            break
    app.shutdown(grace=5.0)
    print(json.dumps({"event": "bye"}), flush=True)


if __name__ == "__main__":
    main()
