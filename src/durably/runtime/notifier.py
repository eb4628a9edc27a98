"""In-process wake-ups: database notifications (and local events) reach waiting code.

Every key ("m:<workflow id>" for a message, "e:" an event, "s:" a stream entry, "d:" an
outcome, "c:" a cancellation) has a counter. A waiter reads the counter, checks the
database, then waits until the counter moves or its timeout passes: a notification
between the check and the wait is never missed. Sync waiters block on a
threading.Event, async waiters on a future of their own loop; no thread per waiter.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, defaultdict
from typing import Any

# Counters kept for at most this many keys (oldest forgotten first): a waiter whose key
# was forgotten just waits for its poll interval, so memory stays bounded.
MAX_KEYS = 100_000


class Notifier:
    """Counters and waiters per key; ``publish`` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._sync: dict[str, list[threading.Event]] = defaultdict(list)
        self._async: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = (
            defaultdict(list)
        )

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
            events = self._sync.pop(key, [])
            futures = self._async.pop(key, [])
        for event in events:
            event.set()
        for loop, future in futures:
            loop.call_soon_threadsafe(_resolve, future)

    def wait(self, keys: tuple[str, ...], since: int, timeout: float) -> bool:
        """Block until ``keys`` moved past ``since`` or ``timeout`` s passed; True if moved."""
        event = threading.Event()
        with self._lock:
            if sum(self._counts.get(key, 0) for key in keys) > since:
                return True
            for key in keys:
                self._sync[key].append(event)
        try:
            return event.wait(max(0.0, timeout))
        finally:
            with self._lock:
                for key in keys:
                    _discard(self._sync, key, event)

    async def wait_async(self, keys: tuple[str, ...], since: int, timeout: float) -> bool:
        """Async twin of ``wait``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if sum(self._counts.get(key, 0) for key in keys) > since:
                return True
            for key in keys:
                self._async[key].append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), max(0.0, timeout))
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                for key in keys:
                    _discard(self._async, key, entry)


def _discard(table: dict[str, list[Any]], key: str, waiter: object) -> None:
    waiters = table.get(key)
    if waiters is not None and waiter in waiters:
        waiters.remove(waiter)
        if not waiters:
            del table[key]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
