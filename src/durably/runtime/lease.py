"""This process's lease as an executor, kept by its own clock.

A step body may start only while the lease is valid here: less than ``lease - margin``
seconds since the heartbeat that renewed it was sent. Other executors take a workflow
over only once the lease has expired by the database's clock, which is never earlier
than that moment, so a body never starts in two places at once. When a renewal comes
after a gap long enough for the lease to have lapsed, the lease's generation moves on:
every run then checks that it still owns its workflow before it starts another body.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from durably.errors import DatabaseUnavailable, LostOwnership

# How long a run waits for its executor to renew a lapsed lease before it gives the
# workflow up to recovery.
HOLD_TIMEOUT = 60.0


SHUTTING_DOWN = "this executor is shutting down; its workflows are left to others"


class LeaseRevoked(LostOwnership):
    """The executor is shutting down (or lost its ID): no body may start any more."""

    def __init__(self, reason: str = SHUTTING_DOWN) -> None:
        self._set(reason)


def _lapsed() -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"this executor could not renew its lease within {HOLD_TIMEOUT:.0f} s; the workflow "
        f"is left unfinished and will be recovered"
    )


class Lease:
    """Validity and generation of the executor's lease; thread-safe."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # Time left for a body that starts at the last valid moment, and for clock drift.
        self.margin = seconds / 4
        self.generation = 0
        self._renewed_at: float | None = None  # monotonic time the last renewal was sent
        self._revoked = False
        self._reason = SHUTTING_DOWN
        self._changed = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def every(self) -> float:
        """How often to renew: four times a lease, so one late renewal costs nothing."""
        return self.seconds / 4

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at monotonic ``sent_at`` was answered (now)."""
        answered_at = time.monotonic()
        with self._changed:
            last = self._renewed_at
            if last is None or answered_at - last >= self.seconds - self.margin:
                self.generation += 1  # the lease may have lapsed in between
            self._renewed_at = sent_at
            self._changed.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def revoke(self, reason: str | None = None) -> None:
        """Give the lease up (shutdown, or the executor ID was taken): bodies that have
        not started never will; they fail with LostOwnership saying ``reason``."""
        with self._changed:
            if not self._revoked and reason is not None:
                self._reason = reason
            self._revoked = True
            self._changed.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def current(self) -> int | None:
        """The lease's generation if it is valid now, else None."""
        if self._revoked:
            raise LeaseRevoked(self._reason)
        renewed = self._renewed_at
        if renewed is not None and time.monotonic() - renewed < self.seconds - self.margin:
            return self.generation
        return None

    def wait(self, timeout: float) -> int | None:
        """Block until the lease is valid (its generation) or ``timeout`` s pass (None)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (generation := self.current()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.5))
            return generation

    async def wait_async(self, timeout: float) -> int | None:
        """Async twin of ``wait``."""
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while (generation := self.current()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            future: asyncio.Future[None] = loop.create_future()
            with self._changed:
                self._async_waiters.append((loop, future))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, min(left, 0.5))
        return generation

    def hold(self, timeout: float = HOLD_TIMEOUT) -> int:
        """The generation of a valid lease, waiting for a renewal if it lapsed; raises
        LostOwnership after a shutdown and DatabaseUnavailable after ``timeout``."""
        generation = self.current()
        if generation is None:
            generation = self.wait(timeout)
            if generation is None:
                raise _lapsed()
        return generation

    async def hold_async(self, timeout: float = HOLD_TIMEOUT) -> int:
        """Async twin of ``hold``."""
        generation = self.current()
        if generation is None:
            generation = await self.wait_async(timeout)
            if generation is None:
                raise _lapsed()
        return generation


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
