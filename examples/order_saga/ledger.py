"""The fake services' books: whole lines appended to files in the current directory,
read and written under one file lock so that processes never see half a check."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def append(path: Path, line: str) -> None:
    """Add one line with a single O_APPEND write: concurrent lines never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def rows(path: Path) -> list[list[str]]:
    """Every line of a book, split into its fields."""
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the service's lock: its check for a key and its write are one step."""
    with Path(f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
