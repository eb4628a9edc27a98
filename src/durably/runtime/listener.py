"""The LISTEN side of the keeper: turns the schema's notifications into local wake-ups.

One connection listens on the schema's channel and reconnects with back-off when the
link drops, and also after any outage the other connections of this process met (the
server it listens on may not be the primary any more). Each payload is
"<kind>:<subject>"; the kinds are ``store.notifications.Kind``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from durably.errors import ConnectionLost
from durably.store.notifications import Kind
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

    async def run(self) -> None:
        host = self.host
        delay = FIRST_DELAY
        outage = host.db.outage
        while not self.pacer.stopping.is_set():
            try:
                async with host.db.dialect.listen(
                    host.db.url, host.statements.channel, until=self._outage_since
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

    def _outage_since(self) -> bool:
        """Whether an outage ended since this connection began to listen."""
        return self.host.db.outage.recoveries != self._recoveries

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
