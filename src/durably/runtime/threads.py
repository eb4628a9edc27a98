"""A small pool of daemon threads for sync workflows running in the background.

Daemon threads, unlike ThreadPoolExecutor's, do not hold the interpreter open at exit:
a workflow still running when the process ends is simply recovered later.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class DaemonPool:
    """Runs callables on up to ``max_threads`` daemon threads, started on demand."""

    def __init__(self, max_threads: int, name: str = "durably") -> None:
        self._max = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0 and self._threads < self._max
            if start:
                self._threads += 1
            else:
                self._idle -= 1 if self._idle else 0
        self._jobs.put(job)
        if start:
            threading.Thread(
                target=self._work, name=f"{self._name}-{self._threads}", daemon=True
            ).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()
            with self._lock:
                self._idle += 1

    def stop(self) -> None:
        with self._lock:
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)
