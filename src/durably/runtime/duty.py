"""What the keeper's duties are to its one loop, and what they use of the engine.

Each background duty (recovery, queue dispatch, wake-ups, schedule ticks) is a small
object that says when it is next due and runs one round when it is. The keeper's loop
asks them in turn; none of them imports the engine, which provides ``KeeperHost``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from durably.runtime.drivers import Runner

if TYPE_CHECKING:
    from durably.errors import ExecutorIdInUse
    from durably.execution.context import WorkflowContext
    from durably.execution.retention import Rule
    from durably.execution.specs import WorkflowSpec
    from durably.store.database import AsyncDatabase

# Claims take at most this many workflows in one statement.
BATCH = 100
NEVER = float("inf")


class SchedulerHook(TypingProtocol):
    """What the keeper needs of a scheduler: run due ticks, say when the next one is."""

    async def tick(self, adb: AsyncDatabase) -> float:
        """Start every due tick; return the monotonic time of the next check."""
        ...


class KeeperHost(Runner, TypingProtocol):
    """The engine as the keeper and its duties see it."""

    @property
    def registry(self) -> Mapping[str, WorkflowSpec]: ...

    @property
    def serves(self) -> bool: ...

    @property
    def listen_queues(self) -> frozenset[str] | None: ...

    @property
    def scheduler(self) -> SchedulerHook | None: ...

    @property
    def app_name(self) -> str | None: ...

    @property
    def retention(self) -> tuple[Rule, ...]:
        """The app's retention policy (empty: keep everything)."""
        ...

    @property
    def incarnation(self) -> str:
        """This engine's token: the process that holds its executor ID."""
        ...

    def lose_id(self, error: ExecutorIdInUse) -> None:
        """Another process took this executor's ID: start nothing more here."""
        ...

    def take_abandoned(self) -> dict[str, int]:
        """The runs that stopped here without an outcome, forgotten as they are taken."""
        ...

    def has_abandoned(self) -> bool:
        """Whether any run stopped here without an outcome."""
        ...

    def run_in_background(
        self,
        ctx: WorkflowContext,
        spec: WorkflowSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> concurrent.futures.Future[Any] | None:
        """Run a claimed workflow here; None if a run of it is already here."""
        ...

    def supersede_local(self, workflow_id: str) -> None:
        """A run of the workflow here stops before its next step (it has a new owner)."""
        ...

    def fence_below(self, floor: int) -> None:
        """Every run here below ``floor`` stops before its next step (a failover)."""
        ...

    def cancel_local(self, workflow_id: str) -> None:
        """A run of the workflow here stops (it was cancelled)."""
        ...


def served_queues(host: KeeperHost) -> list[str]:
    """The queues this executor claims from: the app's, or those it was launched with."""
    listening = host.listen_queues
    # A snapshot first: the app may declare a queue from another thread meanwhile.
    return [name for name in list(host.queues) if listening is None or name in listening]


class Duty(TypingProtocol):
    """One background duty of the keeper."""

    def next_at(self, now: float) -> float:
        """The monotonic time this duty is next due (``<= now``: due now)."""
        ...

    async def run(self, adb: AsyncDatabase, now: float) -> None:
        """Do one round of the duty; raise ``ConnectionLost`` if the database is away."""
        ...

    def after_outage(self) -> None:
        """The database was away: anything may have been missed, look again."""
        ...


class Pacer:
    """The keeper's stop signal and its paced sleeps, shared with its duties."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` with jitter, or less if the keeper is stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds * random.uniform(0.5, 1.0))
