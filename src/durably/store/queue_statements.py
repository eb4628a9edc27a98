"""Statements of queues.sql, bound to their parameters."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durably.store import sqlfile
from durably.store.statements import Statement, batch_rows, bound, token

_NAMES = (
    "declare_queue", "get_queue", "enqueue", "enqueue_many", "dedup_holder", "lock_queue",
    "claim_queued", "claim_queued_many", "claim_queued_partitioned", "set_delay", "debounce",
    "rate_window_opens", "queue_stats",
)  # fmt: skip

# The columns of an enqueue that enqueue_many takes, for each workflow.
_ENQUEUED = (
    "id", "name", "inputs", "max_recovery_attempts", "codec", "timeout", "queue", "priority",
    "dedup_key", "partition_key", "available_at", "parent_id", "parent_step", "app_version",
)  # fmt: skip

if TYPE_CHECKING:
    from durably.store.dialect import Dialect


class QueueStatements:
    """Builds the queue statements for one schema."""

    def __init__(self, schema: str, channel: str, dialect: Dialect | None = None) -> None:
        self.channel = channel
        self._sql = {name: sqlfile.statement(name, schema, dialect) for name in _NAMES}

    def declare_queue(
        self,
        *,
        name: str,
        concurrency: int | None,
        worker_concurrency: int | None,
        rate_limit: int | None,
        rate_period: float | None,
        priority: bool,
        partition_concurrency: int | None,
    ) -> Statement:
        return bound(
            self._sql["declare_queue"],
            {
                "name": name,
                "concurrency": concurrency,
                "worker_concurrency": worker_concurrency,
                "rate_limit": rate_limit,
                "rate_period": rate_period,
                "priority": priority,
                "partition_concurrency": partition_concurrency,
            },
        )

    def get_queue(self, name: str) -> Statement:
        return bound(self._sql["get_queue"], {"name": name})

    def enqueue(
        self,
        *,
        workflow_id: str,
        name: str,
        inputs: str,
        max_recovery_attempts: int,
        codec: str,
        timeout: float | None,
        queue: str,
        priority: int | None,
        dedup_key: str | None,
        partition_key: str | None,
        available_at: datetime | None,
        parent_id: str | None = None,
        parent_step: int | None = None,
        app_version: str | None = None,
    ) -> Statement:
        """Put a workflow on its queue; ``app_version`` pins it to workers that recover
        that version (None: any worker may start it, and records its own)."""
        return bound(
            self._sql["enqueue"],
            {
                "app_version": app_version,
                "id": workflow_id,
                "name": name,
                "inputs": inputs,
                "max_recovery_attempts": max_recovery_attempts,
                "codec": codec,
                "timeout": timeout,
                "queue": queue,
                "priority": priority,
                "dedup_key": dedup_key,
                "partition_key": partition_key,
                "available_at": available_at,
                "parent_id": parent_id,
                "parent_step": parent_step,
                "channel": self.channel,
            },
            combine=self._enqueue_many,
        )

    def enqueue_many(self, statements: Sequence[Statement]) -> Statement:
        """Many enqueues (statements built by ``enqueue``) as one statement: its rows are
        those of the workflows it put on their queues."""
        params: dict[str, Any] = batch_rows(statements, _ENQUEUED)
        params["channel"] = self.channel
        return bound(self._sql["enqueue_many"], params)

    def _enqueue_many(
        self, statements: list[Statement]
    ) -> tuple[Statement, Callable[[Any], list[Any]]]:
        """The group committer's fold: each enqueue gets its own row back, or none (its
        ID, or dedup key, was taken: the same ID twice in one batch goes in once)."""
        ids = [st.params["id"] for st in statements]

        def split(result: Any) -> list[Any]:
            made = {row.id: [row] for row in result}
            return [made.pop(i, []) for i in ids]

        return self.enqueue_many(statements), split

    def dedup_holder(self, queue: str, dedup_key: str) -> Statement:
        return bound(self._sql["dedup_holder"], {"queue": queue, "dedup_key": dedup_key})

    def rate_window_opens(self, queue: str) -> Statement:
        return bound(self._sql["rate_window_opens"], {"queue": queue})

    def lock_queue(self, queue: str) -> Statement:
        return bound(self._sql["lock_queue"], {"queue": queue})

    def claim_queued(
        self,
        *,
        queue: str,
        executor_id: str,
        names: Sequence[str],
        want: int,
        partitioned: bool,
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
    ) -> Statement:
        """Claim queued work not started yet, or started by one of ``versions`` (None:
        any); a first start records ``app_version``."""
        return bound(
            self._sql["claim_queued_partitioned" if partitioned else "claim_queued"],
            {
                "app_version": app_version,
                "versions": None if versions is None else list(versions),
                "queue": queue,
                "executor_id": executor_id,
                "names": list(names),
                "want": want,
                "token": token(),
                "retry": False,
            },
        )

    def claim_queued_many(
        self,
        *,
        wants: Sequence[tuple[str, int]],
        executor_id: str,
        names: Sequence[str],
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
    ) -> Statement:
        """claim_queued for several queues without limits across workers, each up to
        its want: (queue, want) pairs."""
        return bound(
            self._sql["claim_queued_many"],
            {
                "wants": json.dumps([{"queue": q, "want": n} for q, n in wants]),
                "app_version": app_version,
                "versions": None if versions is None else list(versions),
                "executor_id": executor_id,
                "names": list(names),
                "token": token(),
                "retry": False,
            },
        )

    def set_delay(self, workflow_id: str, available_at: datetime) -> Statement:
        return bound(
            self._sql["set_delay"],
            {"workflow_id": workflow_id, "available_at": available_at, "channel": self.channel},
        )

    def debounce(
        self,
        *,
        workflow_id: str,
        name: str,
        inputs: str,
        max_recovery_attempts: int,
        codec: str,
        timeout: float | None,
        queue: str,
        debounce_key: str,
        period: float,
        max_wait: float | None,
    ) -> Statement:
        return bound(
            self._sql["debounce"],
            {
                "id": workflow_id,
                "name": name,
                "inputs": inputs,
                "max_recovery_attempts": max_recovery_attempts,
                "codec": codec,
                "timeout": timeout,
                "queue": queue,
                "debounce_key": debounce_key,
                "period": period,
                "max_wait": max_wait,
                "channel": self.channel,
            },
        )

    def queue_stats(self, minutes: int) -> Statement:
        """Every queue's depth, running work and starts per minute over ``minutes``."""
        return bound(self._sql["queue_stats"], {"minutes": minutes})
