"""A fake receipt mailer, the example's outside world: each receipt it sends is a line
of ``receipts.ledger`` in the current directory. Like a real mail or payment API it takes
an idempotency key and sends once per key: a request repeated with a key it has seen
(a step run again after a crash) is answered without a second receipt. Every request,
repeated or not, is a line of ``receipt_requests.ledger``."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

SENT = Path("receipts.ledger")
REQUESTS = Path("receipt_requests.ledger")
LATENCY = 0.04  # seconds per request: slow enough to watch, and to kill a run half-way


def append(path: Path, line: str) -> None:
    """One line in one O_APPEND write: lines from concurrent senders never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def send(key: str, text: str) -> None:
    """Mail the receipt ``text`` unless a receipt with ``key`` was sent already."""
    time.sleep(LATENCY / 2)  # the request on its way
    append(REQUESTS, f"{key} {text}")
    with Path("receipts.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the check for the key and the send are one
        seen = SENT.read_text().splitlines() if SENT.exists() else []
        if not any(line.endswith(f" key={key}") for line in seen):
            append(SENT, f"{text} key={key}")
    time.sleep(LATENCY / 2)  # the reply on its way back: a consumer killed now never gets it
