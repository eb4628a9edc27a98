"""The heartbeat: renews this executor's lease and brings back what is due for it.

It runs as a task of its own, so that a long round of claims never lets the lease
lapse. Each beat is one statement: the renewal, and a survey of what is due (see
``store.rows.Survey``), handed to the keeper. An idle worker sends nothing but beats.
A beat writes the row only while its executor ID is this engine's (``register`` takes
it at launch, refusing an ID a live process holds); a beat that finds it taken stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from durably.errors import ConnectionLost, DatabaseUnavailable, ExecutorIdInUse
from durably.runtime.duty import served_queues
from durably.runtime.identity import holder_gone, pid_space
from durably.store.outage import FIRST_DELAY, MAX_DELAY
from durably.store.rows import Survey

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost
    from durably.store.database import AsyncDatabase, Database
    from durably.store.statements import Statement

log = logging.getLogger("durably")


def beat_statement(host: KeeperHost, replaces: str | None = None) -> Statement:
    """This executor's registration or renewal, with the survey of what is due for it;
    it records the names and queues this executor serves."""
    return host.statements.heartbeat(
        executor_id=host.executor_id,
        app_name=host.app_name,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        lease=host.lease.seconds,
        incarnation=host.incarnation,
        pid_space=pid_space(),
        names=list(host.registry),
        queues=served_queues(host),
        replaces=replaces,
        worker_clock=datetime.now(UTC),
        app_version=host.versions.current,
        versions=host.versions.recover,
    )


def register(host: KeeperHost, db: Database) -> None:
    """The launch's first beat, before anything runs or is recovered here: take the
    executor ID, or raise ExecutorIdInUse when a live process holds it. A holder known to
    be gone (a crashed process restarted on the same machine) is replaced at once."""
    sent = time.monotonic()
    survey: Survey = db.run_settled(beat_statement(host))[0]
    if not survey.registered and holder_gone(
        survey.holder_pid_space, survey.holder_pid, survey.holder_incarnation
    ):
        log.info(
            "durably: executor %s takes over its ID from pid %s, which no longer runs "
            "(its heartbeat was %.1f s old)",
            host.executor_id,
            survey.holder_pid,
            survey.holder_age or 0.0,
        )
        sent = time.monotonic()
        survey = db.run_settled(beat_statement(host, replaces=survey.holder_incarnation))[0]
    if not survey.registered:
        raise ExecutorIdInUse(
            host.executor_id,
            survey.holder_host,
            survey.holder_pid,
            survey.holder_age,
            survey.holder_expires_in,
        )
    host.lease.renewed(sent)


class Heartbeat:
    """Beats every ``every`` seconds; after a failure, soon again with capped back-off.
    A beat refused because another process took the executor ID calls ``evicted`` and
    the heartbeat stops: the lease is not renewed again."""

    def __init__(
        self,
        host: KeeperHost,
        every: float,
        surveyed: Callable[[Survey], None],
        evicted: Callable[[Survey], None],
    ) -> None:
        self.host = host
        self.every = every
        self.surveyed = surveyed
        self.evicted = evicted

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
            delay, backoff = self.every, FIRST_DELAY
            if not rows:
                continue
            survey = rows[0]
            if not survey.registered:
                self.evicted(survey)
                return
            self.host.lease.renewed(sent)
            self.surveyed(survey)
