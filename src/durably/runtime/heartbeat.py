"""The heartbeat: renews this executor's lease and brings back what is due for it.

It runs as a task of its own, so that a long round of claims never lets the lease
lapse. Each beat is one statement: the renewal, and a survey of what is due (see
``store.rows.Survey``), handed to the keeper. An idle worker sends nothing but beats.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from durably.errors import ConnectionLost, DatabaseUnavailable
from durably.store.outage import FIRST_DELAY, MAX_DELAY
from durably.store.rows import Survey

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost
    from durably.store.database import AsyncDatabase
    from durably.store.statements import Statement

log = logging.getLogger("durably")


def beat_statement(host: KeeperHost) -> Statement:
    """This executor's registration or renewal, with the survey of what is due for it."""
    queues = [
        name for name in host.queues if host.listen_queues is None or name in host.listen_queues
    ]
    return host.statements.heartbeat(
        executor_id=host.executor_id,
        app_name=host.app_name,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        lease=host.lease.seconds,
        names=list(host.registry),
        queues=queues,
    )


class Heartbeat:
    """Beats every ``every`` seconds; after a failure, soon again with capped back-off."""

    def __init__(self, host: KeeperHost, every: float, surveyed: Callable[[Survey], None]) -> None:
        self.host = host
        self.every = every
        self.surveyed = surveyed

    async def run(self, adb: AsyncDatabase) -> None:
        """Beat until cancelled (a Client is no executor and never beats)."""
        if not self.host.serves:
            return
        delay = self.every
        backoff = FIRST_DELAY
        while True:
            await asyncio.sleep(delay)
            sent = time.monotonic()
            try:
                rows = await adb.run(beat_statement(self.host))
            except (ConnectionLost, DatabaseUnavailable):
                delay = min(self.every, backoff * random.uniform(0.5, 1.0))
                backoff = min(MAX_DELAY, backoff * 2)
                continue
            except Exception:
                log.exception("durably: heartbeat failed unexpectedly; retrying in 1 s")
                delay = min(self.every, 1.0)
                continue
            self.host.lease.renewed(sent)
            delay, backoff = self.every, FIRST_DELAY
            if rows:
                self.surveyed(rows[0])
