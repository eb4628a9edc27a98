"""The executor's background loop: one scheduling loop over its named duties.

The duties are recovery (``recovery``), queue dispatch (``dispatch``), wake-ups and
deadlines (``wakeups``), schedule ticks (``ticks``), a rare census of work no worker
serves (``census``) and the app's retention policy (``sweeper``); beside the loop run
the heartbeat (``heartbeat``: lease renewal plus a survey of what is due) and the LISTEN
connection (``listener``). Idle, an executor sends one query a beat, every ``lease/4``
(or every ``poll_interval`` if that is shorter), and a census every ten minutes;
notifications, local timers and the beats' surveys bring duties forward. During a
database outage every duty waits out a capped back-off (so work resumes within about a
second of the server's return) and is then run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durably.errors import ConnectionLost, DatabaseUnavailable, ExecutorIdInUse, LostOwnership
from durably.runtime.census import Census
from durably.runtime.dispatch import Dispatch
from durably.runtime.duty import Duty, Pacer
from durably.runtime.heartbeat import Heartbeat
from durably.runtime.listener import Listener
from durably.runtime.recovery import Recovery
from durably.runtime.sweeper import Sweeper
from durably.runtime.ticks import Ticks
from durably.runtime.wakeups import WakeUps
from durably.store.outage import FIRST_DELAY, MAX_DELAY

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost
    from durably.store.rows import Survey

log = logging.getLogger("durably")


class Keeper:
    """Owns the executor's background duties; runs on the engine's runtime loop."""

    def __init__(self, host: KeeperHost, poll_interval: float) -> None:
        self.host = host
        self.pacer = Pacer()
        self._kick = asyncio.Event()
        self._draining = False
        self.dispatch = Dispatch(host, self.pacer, self._kick.set)
        self.wakeups = WakeUps(host, self.pacer, self.dispatch.queue_due)
        self.recovery = Recovery(host, self.pacer, self._kick.set, self.dispatch.queue_due)
        self.ticks = Ticks(host.scheduler)
        # A Client runs no workflows: it only listens (handles wait on notifications).
        self.duties: tuple[Duty, ...] = (
            (
                self.recovery,
                self.dispatch,
                self.wakeups,
                self.ticks,
                Census(host),
                Sweeper(host, host.retention),
            )
            if host.serves
            else ()
        )
        self.heartbeat = Heartbeat(
            host, min(host.lease.every, poll_interval), self.surveyed, self.evicted
        )
        self.listener = Listener(
            host,
            self.pacer,
            wake=self.kick,
            queue_due=self.dispatch.queue_due,
            queue_at=self.queue_at,
            missed=self._missed,
        )

    # ---------------------------------------------------------------- control

    def stop(self) -> None:
        self.pacer.stopping.set()
        self._kick.set()

    def drain(self) -> None:
        """Stop taking new work (claims, wake-ups, takeovers, ticks); keep the heartbeat."""
        self._draining = True
        self._kick.set()

    def kick(self) -> None:
        """Look for woken parked workflows soon (a message, event or resume came)."""
        self.wakeups.due = True
        self._kick.set()

    def nudge(self) -> None:
        """Look at the duties again now (a run was abandoned here, say)."""
        self._kick.set()

    def wake_at(self, when: datetime) -> None:
        """At ``when``, look for due parked workflows (one parked here until then)."""
        self.wakeups.wake_at(when)
        self._kick.set()

    def queue_at(self, when: datetime, queue: str) -> None:
        """At ``when``, claim from ``queue`` (its delayed work comes due)."""
        self.dispatch.queue_at(when, queue)
        self._kick.set()

    def surveyed(self, survey: Survey) -> None:
        """A heartbeat's answer: bring forward what it found due."""
        if survey.next_wake is not None:
            self.wakeups.parked_due(_local(survey.next_wake, survey.now))
        if survey.next_deadline is not None:
            self.wakeups.deadline(_local(survey.next_deadline, survey.now))
        if survey.next_tick is not None:
            self.ticks.tick_at(_local(survey.next_tick, survey.now))
        for queue in survey.ready_queues:
            self.dispatch.due.add(queue)
        if survey.expired:
            self.recovery.expired_seen()
        if survey.timeline is not None:
            self.recovery.timeline_seen(survey.timeline)
        self._kick.set()

    def evicted(self, survey: Survey) -> None:
        """A beat found this executor's ID held by another process (it took the row
        after this one's lease lapsed): stop claiming, and start no more bodies here."""
        host = "an unknown host" if survey.holder_host is None else repr(survey.holder_host)
        log.error(
            "durably: executor ID %r was taken by another process (%s, pid %s) after this "
            "process's lease lapsed; this process stops claiming work and starts no more "
            "workflows or step bodies (its unfinished workflows are the other's now). Two "
            "live processes must never share an executor ID: restart this one with its own "
            "executor_id, or none to let durably generate one.",
            self.host.executor_id,
            host,
            survey.holder_pid,
        )
        self.host.lose_id(
            ExecutorIdInUse(
                self.host.executor_id,
                survey.holder_host,
                survey.holder_pid,
                survey.holder_age,
                survey.holder_expires_in,
            )
        )
        self.drain()

    def _missed(self) -> None:
        """The listener (re)connected: anything sent while it was away is looked for."""
        self.kick()
        for queue in list(self.host.queues):  # declared from other threads too
            self.dispatch.queue_due(queue)

    # ---------------------------------------------------------------- the loop

    async def run(self, ready: asyncio.Future[None] | Any) -> None:
        host = self.host
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            adb = await host.async_db()
            host.db.outage.when_ended(lambda: _call_soon(loop, self.nudge))
            tasks.append(loop.create_task(self.listener.run()))
            if host.serves:
                # The first batch before launch returns; the rest as these finish.
                await self.recovery.start(adb)
        except BaseException as exc:
            ready.set_exception(exc)
            for task in tasks:
                task.cancel()
            raise
        ready.set_result(None)
        tasks.append(loop.create_task(self.heartbeat.run(adb)))
        backoff = FIRST_DELAY
        try:
            while not self.pacer.stopping.is_set():
                self._kick.clear()
                now = time.monotonic()
                if self._draining:
                    await self._kick.wait()  # until stopped: the heartbeat goes on
                    continue
                if self._lapsed():
                    # No claims while this executor's own lease is in doubt: what it
                    # claimed could not start, and others may be taking its work. What
                    # is due waits for the heartbeat to renew the lease.
                    await self.pacer.pause(0.25)
                    continue
                try:
                    for duty in self.duties:
                        if duty.next_at(now) <= now:
                            await duty.run(adb, now)
                    backoff = FIRST_DELAY
                except (ConnectionLost, DatabaseUnavailable):
                    # Every duty waits out the pause (no spinning; the store logs the
                    # outage once); then each looks again for what it may have missed.
                    await self.pacer.pause(backoff)
                    backoff = min(MAX_DELAY, backoff * 2)
                    for duty in self.duties:
                        duty.after_outage()
                    continue
                except Exception:
                    log.exception("durably executor loop: unexpected error; retrying in 1 s")
                    await self.pacer.pause(1.0)
                    continue
                now = time.monotonic()
                wake = min((duty.next_at(now) for duty in self.duties), default=float("inf"))
                if wake <= now:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), min(wake - now, 3600.0))
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def _lapsed(self) -> bool:
        """This executor serves and its lease is not valid now (a Client has none)."""
        host = self.host
        try:
            return host.serves and host.lease.current() is None
        except LostOwnership:  # revoked: shutting down
            return True


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` on ``loop`` soon, from any thread; nothing once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def _local(when: datetime, db_now: datetime) -> datetime:
    """A database time as a time of this machine's clock (the two may differ)."""
    return datetime.now(db_now.tzinfo) + (when - db_now)
