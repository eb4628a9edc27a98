"""A fake data warehouse: the pipeline's outside world, kept in files of the current directory.

``load`` writes one chunk's aggregate. A step body is at least once (a worker killed after
the body ran and before its checkpoint committed runs it again), so the warehouse does
what a real one does with a load ID: it remembers every idempotency key it accepted and
ignores a second load under the same key. ``loads.ledger`` gets one line per accepted
load (the exactly-once effect); ``attempts.ledger`` one line per call (at least once)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOADS = Path("loads.ledger")
ATTEMPTS = Path("attempts.ledger")
LOCK = Path("warehouse.lock")


def _append(path: Path, line: str) -> None:
    # One write of a whole line with O_APPEND: lines of concurrent writers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def load(key: str, chunk: str, records: int, total: int) -> bool:
    """Store ``chunk``'s aggregate under ``key``; False if that key was loaded before."""
    time.sleep(0.05)  # a network round trip
    _append(ATTEMPTS, chunk)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # check-and-write as one, across processes
        seen = (
            {line.split(" ", 1)[0] for line in LOADS.read_text().splitlines()}
            if LOADS.exists()
            else set()
        )
        if key in seen:
            return False
        _append(LOADS, f"{key} {chunk} {records} {total}")
        return True
