"""The retention duty: applies the app's retention policy, one worker of the fleet at a time.

Every ``SWEEP_EVERY`` seconds each worker asks for the fleet's turn (``claim_chore``); the
one that gets it deletes what the policy names, one short batch per round of the keeper,
so queue dispatch, recovery and wake-ups run between batches and no worker is held up.
A worker that dies mid-sweep leaves the rest to the next turn.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from durably.execution.retention import Rule, delete_batch, delete_executors
from durably.runtime.drivers import drive_async
from durably.runtime.duty import NEVER

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost
    from durably.store.database import AsyncDatabase

log = logging.getLogger("durably")

# Seconds between turns (read at each round, so tests may shorten it).
SWEEP_EVERY = 300.0
# Workflows deleted per transaction.
SWEEP_BATCH = 500
CHORE = "retention"


class Sweeper:
    """Due at launch and every ``SWEEP_EVERY`` seconds while the app has a policy."""

    def __init__(self, host: KeeperHost, rules: tuple[Rule, ...]) -> None:
        self.host = host
        self.rules = rules
        self.at = time.monotonic() if rules else NEVER
        self._left: list[Rule] = []  # rules still to apply in the turn this worker holds
        self._deleted = 0

    def next_at(self, now: float) -> float:
        return self.at

    async def run(self, adb: AsyncDatabase, now: float) -> None:
        host = self.host
        if not self._left:
            taken = await adb.run(host.statements.claim_chore(CHORE, SWEEP_EVERY))
            if not taken:
                self.at = now + SWEEP_EVERY
                return
            self._left, self._deleted = list(self.rules), 0
        rule = self._left[0]
        deleted = await drive_async(host, delete_batch(host, rule, SWEEP_BATCH))
        self._deleted += deleted
        if deleted == SWEEP_BATCH:
            self.at = now  # more of it: the next batch after the other duties' turn
            return
        self._left.pop(0)
        if self._left:
            self.at = now
            return
        executors = await drive_async(
            host, delete_executors(host, min(rule.age for rule in self.rules))
        )
        if self._deleted or executors:
            log.info(
                "durably retention: deleted %d finished workflows and %d executor rows",
                self._deleted,
                executors,
                extra={"deleted_workflows": self._deleted, "deleted_executors": executors},
            )
        self.at = now + SWEEP_EVERY

    def after_outage(self) -> None:
        pass  # the turn goes on where it was; a batch lost to the outage is taken again
