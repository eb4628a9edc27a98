"""In-process wake-ups: database notifications (and local events) reach waiting code.

Every key (a notification's payload, ``store.notifications.Kind.key``: a message, event,
stream entry, outcome or cancellation of one workflow) has a counter. A waiter reads the
counter, checks the database, then waits until the counter moves or its timeout passes:
a notification between the check and the wait is never missed. Sync waiters block on a
threading.Event, async waiters on a future of their own loop; no thread per waiter.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, defaultdict

# Counters kept for at most this many keys (oldest forgotten first): a waiter whose key
# was forgotten just waits for its poll interval, so memory stays bounded.
MAX_KEYS = 100_000


class _Awaited:
    """An async waiter: its future is resolved on its own loop, from any thread."""

    __slots__ = ("future", "loop")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()

    def set(self) -> None:
        self.loop.call_soon_threadsafe(_resolve, self.future)


_Waiter = threading.Event | _Awaited


class Notifier:
    """Counters and waiters per key; ``publish`` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: OrderedDict[str, int] = OrderedDict()
        # A waiter is a threading.Event (sync) or an _Awaited (async): both have set().
        self._waiters: dict[str, list[_Waiter]] = defaultdict(list)

    def generation(self, *keys: str) -> int:
        """The current count of ``keys``: wait for it to move past this."""
        with self._lock:
            return sum(self._counts.get(key, 0) for key in keys)

    def publish(self, key: str) -> None:
        """Wake everything waiting on ``key``."""
        with self._lock:
            self._counts[key] = self._counts.pop(key, 0) + 1
            if len(self._counts) > MAX_KEYS:
                self._counts.popitem(last=False)
            waiters = self._waiters.pop(key, [])
        for waiter in waiters:
            waiter.set()

    def wait(self, keys: tuple[str, ...], since: int, timeout: float) -> bool:
        """Block until ``keys`` moved past ``since`` or ``timeout`` s passed; True if moved."""
        event = threading.Event()
        if self._enlist(keys, since, event):
            return True
        try:
            return event.wait(max(0.0, timeout))
        finally:
            self._delist(keys, event)

    async def wait_async(self, keys: tuple[str, ...], since: int, timeout: float) -> bool:
        """Async twin of ``wait``."""
        waiter = _Awaited()
        if self._enlist(keys, since, waiter):
            return True
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), max(0.0, timeout))
            return True
        except TimeoutError:
            return False
        finally:
            self._delist(keys, waiter)

    def _enlist(
        self, keys: tuple[str, ...], since: int, waiter: threading.Event | _Awaited
    ) -> bool:
        """Register ``waiter`` on ``keys``; True (and nothing registered) if they already
        moved past ``since``."""
        with self._lock:
            if sum(self._counts.get(key, 0) for key in keys) > since:
                return True
            for key in keys:
                self._waiters[key].append(waiter)
        return False

    def _delist(self, keys: tuple[str, ...], waiter: _Waiter) -> None:
        with self._lock:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[key]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
