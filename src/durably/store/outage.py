"""One account of database outages per process: retry pacing and logging once per outage.

Every caller that meets a broken connection (a workflow's statement, the heartbeat, the
executor loop, the listener) reports here. The first failure of an outage is logged as a
warning, later ones are counted silently, and the first success after it logs how long
it lasted and how many calls failed: a five-minute outage costs two log lines, not one
per retry. ``delays`` paces a retry loop: capped, jittered, exponential.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("durably")

FIRST_DELAY = 0.05
MAX_DELAY = 1.0  # back within about a second of the server's return
RETRY_BUDGET = 60.0  # seconds a single call keeps retrying before it gives up


def delays(budget: float = RETRY_BUDGET) -> Iterator[float]:
    """Pauses between retries: doubling from 50 ms, capped at 1 s, with jitter (so that
    many callers do not reconnect in lockstep), until ``budget`` seconds are spent."""
    spent = 0.0
    delay = FIRST_DELAY
    while spent < budget:
        pause = delay * random.uniform(0.5, 1.0)
        spent += pause
        yield pause
        delay = min(MAX_DELAY, delay * 2)


class Outage:
    """Whether the database is failing now, since when, and how often; thread-safe."""

    def __init__(self, what: str = "the database") -> None:
        self._what = what
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        # Outages ended so far: connections of others sharing this account (opened
        # before the outage, unused during it) are suspect when it moves.
        self.recoveries = 0
        self._ended: list[Callable[[], None]] = []

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the thread of the call that succeeded) each time an
        outage ends: the executor loop looks at once whether the server failed over."""
        with self._lock:
            self._ended.append(callback)

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        """A call failed because the database could not be reached."""
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
        if first:
            log.warning(
                "durably: %s is unreachable (%s); retrying quietly until it answers",
                self._what,
                str(error).strip() or type(error).__name__,
            )

    def succeeded(self) -> None:
        """A call went through: end the outage, if there was one, with a summary."""
        if self._since is None:
            return
        with self._lock:
            since, failures = self._since, self._failures
            self._since, self._failures = None, 0
            if since is not None:
                self.recoveries += 1
            ended = list(self._ended) if since is not None else []
        for callback in ended:
            callback()
        if since is not None:
            log.warning(
                "durably: %s answers again after %.1f s (%d failed calls during the outage)",
                self._what,
                time.monotonic() - since,
                failures,
            )
