"""The LISTEN side of the keeper: turns the schema's notifications into local wake-ups.

One connection listens on the schema's channel and on the channel of each queue this
process serves (work put on a queue is announced only there, so a Client or a worker of
other queues is not woken by it). It listens again when the queues it serves change,
and reconnects with back-off when the link drops, and also after any outage the other
connections of this process met (the server it listens on may not be the primary any
more). Each payload is "<kind>:<subject>"; the kinds are ``store.notifications.Kind``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from durably.errors import ConnectionLost
from durably.runtime.duty import served_queues
from durably.store.notifications import Kind, queue_channel
from durably.store.outage import FIRST_DELAY, MAX_DELAY

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost, Pacer


class Listener:
    """Listens while the keeper runs; hands each notification to the right duty."""

    def __init__(
        self,
        host: KeeperHost,
        pacer: Pacer,
        *,
        wake: Callable[[], None],
        queue_due: Callable[[str], None],
        queue_at: Callable[[datetime, str], None],
        missed: Callable[[], None],
    ) -> None:
        self.host = host
        self.pacer = pacer
        self.wake = wake
        self.queue_due = queue_due
        self.queue_at = queue_at
        self.missed = missed  # anything may have been sent while nobody listened
        self._recoveries = 0  # the outages ended when this connection began to listen
        self._queues: tuple[str, ...] = ()  # the queues whose channels it listens to

    async def run(self) -> None:
        host = self.host
        delay = FIRST_DELAY
        outage = host.db.outage
        while not self.pacer.stopping.is_set():
            self._queues = self._served()
            channel = host.statements.channel
            channels = [channel, *(queue_channel(channel, queue) for queue in self._queues)]
            try:
                async with host.db.dialect.listen(
                    host.db.url, channels, until=self._listen_again
                ) as listening:
                    delay = FIRST_DELAY
                    outage.succeeded()
                    self._recoveries = outage.recoveries
                    self.missed()
                    async for payload in listening:
                        self.dispatch(payload)
            except ConnectionLost as exc:
                outage.failed(exc)
                await self.pacer.pause(delay)
                delay = min(MAX_DELAY, delay * 2)

    def _served(self) -> tuple[str, ...]:
        """The queues whose channels to listen on: those this process claims from."""
        host = self.host
        return tuple(sorted(served_queues(host))) if host.serves else ()

    def _listen_again(self) -> bool:
        """Whether to listen again on a new connection: an outage ended since this one
        began to listen, or the queues served here changed (a queue declared later)."""
        return self.host.db.outage.recoveries != self._recoveries or self._served() != self._queues

    def dispatch(self, payload: str) -> None:
        host = self.host
        host.notifier.publish(payload)
        kind, _, subject = payload.partition(":")
        if kind == Kind.RESUMED:
            host.supersede_local(subject)  # a new epoch owns it now
            self.wake()
        elif kind in (Kind.MESSAGE, Kind.EVENT):
            self.wake()
        elif kind == Kind.CANCELLED:
            host.cancel_local(subject)
        elif kind == Kind.QUEUED:
            self.queue_due(subject)  # here the subject names a queue
        elif kind == Kind.DELAYED:  # "<epoch seconds>:<queue>": delayed work comes due
            due, _, queue = subject.partition(":")
            with contextlib.suppress(ValueError):
                self.queue_at(datetime.fromtimestamp(float(due), UTC), queue)
