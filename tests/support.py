"""Helpers shared by the tests and their worker processes (``tests/`` is on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 30.0


def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy and return that value;
    AssertionError naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(0.05, delay * 1.5)
