"""Fake outside services of the shop, a payment gateway and a mailer: each call is slow
(a few hundred milliseconds) and takes an idempotency key, as the real ones do. A call
repeated with a key already served (a step run again after its worker died) gets the
first call's answer and does nothing more. What they did is appended to ledgers in the
current directory: ``charges.ledger`` and ``emails.ledger`` one line per charge or email,
``requests.ledger`` one line per request received, repeats included."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

REQUESTS = Path("requests.ledger")


def append(path: Path, line: str) -> None:
    """One line in one O_APPEND write: lines from concurrent processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _once(service: str, latency: float, key: str, text: str) -> str:
    """Do ``text`` for ``key`` unless it was done already; the reference of what was done."""
    time.sleep(latency / 2)  # the request on its way
    append(REQUESTS, f"{service} {key} {text}")
    reference = f"{service[:2]}_{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    book = Path(f"{service}.ledger")
    with Path(f"{service}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the check for the key and the write are one
        seen = book.read_text().splitlines() if book.exists() else []
        if not any(line.startswith(reference + " ") for line in seen):
            append(book, f"{reference} {text}")
    time.sleep(latency / 2)  # the reply on its way back: a worker killed now never gets it
    return reference


def charge(key: str, customer: str, cents: int) -> str:
    """Charge the customer's card; the charge's ID."""
    return _once("charges", 0.3, key, f"{customer} {cents}")


def email(key: str, to: str, subject: str) -> str:
    """Send an email; the message's ID."""
    return _once("emails", 0.2, key, f"{to} {subject}")
