"""The census duty: now and then, names of waiting work that no live worker serves.

Work recorded under a name no worker registers waits forever (a renamed workflow, a
typo in a Client's enqueue). The census reads all waiting work on this executor's
queues, and parked work, so it runs at launch and then rarely, never on the hot path;
each such name is logged once per process (``served.strangers_seen``). So is each
application version of unfinished work that this executor would run by name but does not
recover, and no live executor recovers (``served.versions_stranded``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durably.runtime.duty import served_queues
from durably.runtime.served import strangers_seen, versions_stranded
from durably.store.version_statements import version_statements

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost
    from durably.store.database import AsyncDatabase

# Seconds between censuses after the first (read at each round, so tests may shorten it).
CENSUS_EVERY = 600.0


class Census:
    """Due at the first round after launch, then every ``CENSUS_EVERY`` seconds."""

    def __init__(self, host: KeeperHost) -> None:
        self.host = host
        self.at = 0.0

    def next_at(self, now: float) -> float:
        return self.at

    async def run(self, adb: AsyncDatabase, now: float) -> None:
        self.at = now + CENSUS_EVERY
        host = self.host
        rows = await adb.run(host.statements.strangers(list(host.registry), served_queues(host)))
        if rows:
            strangers_seen(host.executor_id, [row.name for row in rows])
        recover = host.versions.recover
        if recover is not None and host.registry:
            statements = version_statements(host.db.schema, host.db.dialect)
            stranded = await adb.run(statements.stranded_versions(list(host.registry), recover))
            if stranded:
                versions_stranded(
                    host.executor_id,
                    host.versions.current,
                    [(row.app_version, row.workflows) for row in stranded],
                )

    def after_outage(self) -> None:
        pass  # nothing is lost by a late census
