"""What the engine's decisions need of the live process, named as a protocol: the
execution layer depends on this, the runtime's ``Engine`` provides it, so execution never
imports the runtime."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from durably.codec import Codec
    from durably.execution.versions import VersionScope
    from durably.queue_spec import QueueSpec
    from durably.store.app_database import AppStatements
    from durably.store.queue_statements import QueueStatements
    from durably.store.statements import Statements


class Host(Protocol):
    """The executor a workflow runs in, as the execution layer sees it."""

    @property
    def statements(self) -> Statements: ...

    @property
    def queue_statements(self) -> QueueStatements: ...

    @property
    def codec(self) -> Codec: ...

    @property
    def executor_id(self) -> str: ...

    @property
    def park_after(self) -> float: ...

    @property
    def epoch_floor(self) -> int:
        """The lowest epoch of the database's timeline as last read: a run below it was
        claimed before a failover (0 until one is seen)."""
        ...

    @property
    def queues(self) -> Mapping[str, QueueSpec]: ...

    @property
    def observers(self) -> tuple[Any, ...]:
        """Telemetry observers, ``execution.observe.Observer`` each (named loosely here:
        that module names this one); empty: none, and no hook is called."""

    @property
    def versions(self) -> VersionScope:
        """The version recorded on what this executor starts, and those it recovers."""
        ...

    def lease_held(self) -> int | None:
        """The generation of this executor's lease when it is valid now, without waiting
        (None: it must be waited for, ``HoldLease``); raises once the lease is revoked."""

    def app_statements(self, url: str) -> AppStatements:
        """The statements for another database that transaction steps write to."""

    def abandon(self, workflow_id: str, epoch: int) -> None:
        """Remember a run that stopped unrecorded here, to be claimed back later."""

    def parked(self, workflow_id: str, wake_at: datetime | None) -> None:
        """A workflow released itself to wait in the database until ``wake_at``."""
