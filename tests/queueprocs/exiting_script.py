"""A plain script (no ``with app:``, no logging set up) that ends mid-workflow: KEY's step runs.

``python exiting_script.py KEY`` with the environment of ``queueprocs.worker_app``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from queueprocs.jobs import effect_lines
from queueprocs.worker_app import jobs
from support import wait_until


def main(key: str) -> None:
    handle = jobs.gated.options(id=key).start(key)
    effects = Path(os.environ["QP_EFFECTS"])
    wait_until(
        lambda: ("start", key, os.getpid()) in effect_lines(effects), what="the step running"
    )
    print(f"started {handle.id}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
