"""A fake data warehouse: the pipeline's outside world, kept in files of the current directory.

``load`` writes one chunk's aggregate. A step body is at least once (a worker killed after
the body ran and before its checkpoint committed runs it again), so the warehouse does
what a real one does with a load ID: it remembers every idempotency key it accepted and
ignores a second load under the same key. ``loads.ledger`` gets one line per accepted
load (the exactly-once effect); ``attempts.ledger`` one line per call (at least once).
To show why the key matters, the warehouse loses its reply to the first load of about
one key in six after storing it (deterministic: by a checksum of the key)."""

from __future__ import annotations

import fcntl
import os
import time
import zlib
from pathlib import Path

LOADS = Path("loads.ledger")
ATTEMPTS = Path("attempts.ledger")
LOCK = Path("warehouse.lock")


class LoadTimeout(Exception):
    """No reply came: the load may or may not have been stored."""


def _append(path: Path, line: str) -> None:
    # One write of a whole line with O_APPEND: lines of concurrent writers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _keys(path: Path, field: int) -> list[str]:
    """The keys recorded in a ledger (field ``field`` of each line)."""
    return [line.split()[field] for line in path.read_text().splitlines()] if path.exists() else []


def load(key: str, chunk: str, records: int, total: int) -> bool:
    """Store ``chunk``'s aggregate under ``key``; False if that key was loaded before."""
    time.sleep(0.05)  # a network round trip
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # check-and-write as one, across processes
        _append(ATTEMPTS, f"{chunk} {key}")
        first_try = _keys(ATTEMPTS, 1).count(key) == 1
        if key in _keys(LOADS, 0):
            return False
        _append(LOADS, f"{key} {chunk} {records} {total}")
    if first_try and zlib.crc32(key.encode()) % 6 == 0:
        raise LoadTimeout(f"load {key}: stored, but the reply was lost")
    return True
