"""Running a claim and starting what it claimed: shared by recovery, wake-ups and queues.

A claim moves workflows to this executor under a new epoch. If the connection breaks
after it was sent, it may have committed: it is settled by its token, retrying until the
database answers, so nothing claimed here is ever left unrun.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from durably import codec as codec_module
from durably.errors import (
    ConnectionLost,
    DatabaseUnavailable,
    LostOwnership,
    ValueDecodingError,
    WorkflowCancelled,
)
from durably.execution import observe
from durably.execution.context import WorkflowContext
from durably.execution.protocol import finish, load_recorded_many
from durably.runtime import logs
from durably.runtime.drivers import drive_async
from durably.status import Status
from durably.store.outage import FIRST_DELAY, MAX_DELAY

if TYPE_CHECKING:
    from durably.runtime.duty import KeeperHost, Pacer
    from durably.store.database import AsyncDatabase
    from durably.store.rows import Claimed
    from durably.store.statements import Statement

Started = list[tuple[str | None, concurrent.futures.Future[Any]]]


async def write_claim(
    adb: AsyncDatabase,
    pacer: Pacer,
    statements: tuple[Statement, ...],
    *,
    own_commit: bool = False,
) -> list[Claimed]:
    """Run a claim (one statement, or a few in one transaction) and return its rows.

    One statement shares the group commit unless ``own_commit``: then it commits alone on
    a pooled connection, so that it does not wait behind the checkpoints queued for the
    group commit (recovery claims while the workflows it started write theirs)."""
    try:
        if len(statements) == 1 and not own_commit:
            return await adb.write(statements[0])  # type: ignore[no-any-return]
        return await adb.run_transaction(statements)  # type: ignore[no-any-return]
    except ConnectionLost:
        pass
    backoff = FIRST_DELAY
    while True:
        await pacer.pause(backoff)
        backoff = min(MAX_DELAY, backoff * 2)
        try:
            return await adb.retry(statements)  # type: ignore[no-any-return]
        except ConnectionLost:
            if pacer.stopping.is_set():
                raise


async def start_claimed(
    host: KeeperHost,
    rows: list[Claimed],
    generation: int,
    *,
    recovered: logs.Recovered | None = None,
    requeued: Callable[[str], None] | None = None,
    from_queue: bool = False,
) -> Started:
    """Run claimed workflows here; returns (queue or None, future) of each started.

    A claimed row that went back on its queue is handed to ``requeued(queue)``, one that
    was dead-lettered is logged. Recorded operations are read in one query for the whole
    batch; a workflow claimed from its queue for the first time (epoch 2) has none.
    ``recovered`` says why recovery claimed them (logged at INFO), None for other claims.
    """
    runnable = []
    for row in rows:
        if row.status == Status.DEAD_LETTER:
            logs.dead_lettered(row)
            continue
        if recovered is not None:
            logs.recovered(row, recovered)
        if row.status == Status.ENQUEUED and row.queue_name is not None:
            if requeued is not None:
                requeued(row.queue_name)  # claimed again within its queue's limits
        else:
            runnable.append(row)
    history = [row.id for row in runnable if not (from_queue and row.epoch == 2)]
    recorded = await drive_async(host, load_recorded_many(host, history))
    started: Started = []
    for row in runnable:
        spec = host.registry[row.name]
        ctx = WorkflowContext(
            host,
            row.id,
            row.name,
            int(row.epoch),
            recorded.get(row.id, {}),
            row.deadline,
            lease_generation=generation,
        )
        if host.observers:
            origin = recovered or ("queue" if from_queue else "wakeup")
            observe.claimed(host.observers, ctx, row.inputs, origin, row.queue_name)
        try:
            args, kwargs = codec_module.load_args(host.codec, row.inputs, spec.fn)
        except ValueDecodingError as exc:
            # Inputs that do not fit the function's type hints (an enqueue from SQL or
            # another language, say) never will: the workflow fails now, with the reason.
            logs.unresumable(row)
            await _fail(host, ctx, exc)
            continue
        except Exception:
            logs.unresumable(row)
            host.abandon(row.id, int(row.epoch))
            continue
        future = host.run_in_background(ctx, spec, args, kwargs)
        if future is not None:
            started.append((row.queue_name, future))
    return started


async def _fail(host: KeeperHost, ctx: WorkflowContext, exc: Exception) -> None:
    """Record a claimed workflow's error outcome without running it (fenced as usual)."""
    try:
        await drive_async(host, finish(ctx, Status.ERROR, error=codec_module.dump_error(exc)))
    except (LostOwnership, WorkflowCancelled):
        pass  # no longer this executor's to finish
    except DatabaseUnavailable:
        host.abandon(ctx.workflow_id, ctx.epoch)  # claimed back, and tried again, later
