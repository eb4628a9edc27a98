"""Ready-to-run statements: the named queries of queries.sql bound to their parameters.

The execution layer asks for these by name and hands them to a store to run; it never
sees SQL. Each statement says what it returns, so the sync and the async store (and the
group committer) run them the same way.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from durably.store import rows, sqlfile
from durably.store.notifications import channel_for

Returns = Literal["rowcount", "rows"]

if TYPE_CHECKING:
    from durably.store.dialect import Dialect


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement with its parameters and what the caller wants back.

    ``combine``, when set, folds several statements of the same kind that meet in one
    group-commit batch into a single multi-row statement, and splits its result back.
    """

    sql: str
    params: Mapping[str, Any]
    returns: Returns = "rowcount"
    combine: Combiner | None = None
    # The named row type of its result rows (store/rows.py); None for plain tuples.
    row: Callable[..., Any] | None = None
    # Run as a server-side prepared statement. A batch that joins its rows to the
    # workflows table (checkpoints, finishes) is not: a prepared statement soon runs a
    # generic plan, made once for a table of the size it had then, and one made on a
    # young table (a scan of every PENDING workflow for each batch, say) was kept as the
    # table grew, until the next ANALYZE: the first minute of a new schema ran 5x slower.
    # Planned each time instead, for about 0.25 ms a batch.
    prepare: bool = True

    @property
    def name(self) -> str:
        """The name of the statement's block in the .sql files."""
        return getattr(self.sql, "name", "?")

    def retried(self) -> Statement:
        """The statement to run again when this one's outcome is unknown (the connection
        broke after it was sent). A statement that could not be re-run blindly carries a
        token and a ``retry`` flag: the retry also returns what its first attempt did."""
        if "retry" not in self.params:
            return self
        return dataclasses.replace(self, params={**self.params, "retry": True}, combine=None)


def bound(
    query: sqlfile.Query, params: Mapping[str, Any], combine: Combiner | None = None
) -> Statement:
    """A statement of the .sql files bound to its parameters. It returns rows of its row
    type (``rows.ROW_TYPES``), or its rowcount when it has none."""
    row = rows.ROW_TYPES.get(query.name)
    return Statement(query, params, "rowcount" if row is None else "rows", combine, row)


def batch_rows(statements: Sequence[Statement], columns: Sequence[str]) -> dict[str, str]:
    """The parameters of a batch statement: its rows as one JSON document, a list of
    objects with ``columns`` (read with json_to_recordset). Bound as arrays, one per
    column, psycopg spent about 20 microseconds a row in Python; this takes about 4.

    The statements of a batch come from one builder: when the first one's parameters
    hold every column, so do all of theirs, and they go out as they are (a copy of each,
    column by column, was a tenth of a busy process's Python); json_to_recordset reads
    the columns it names and ignores the other keys."""
    if statements[0].params.keys() >= set(columns):
        rows: list[Mapping[str, Any]] = [st.params for st in statements]
    else:
        rows = [{c: st.params[c] for c in columns} for st in statements]
    return {"rows": json.dumps(rows, default=_json_default, separators=(",", ":"))}


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"a batch row holds a {type(value).__name__}")


def _versions(versions: Sequence[str] | None) -> list[str] | None:
    """The versions an executor recovers, as bound (None: any version)."""
    return None if versions is None else list(versions)


def token() -> str:
    """A fresh token naming one statement's claim, kept by its retries."""
    return uuid.uuid4().hex


Combiner = Callable[[list[Statement]], tuple[Statement, Callable[[Any], list[Any]]]]


class Statements:
    """Builds every statement for one schema; the SQL text is rendered once."""

    def __init__(self, schema: str, dialect: Dialect | None = None) -> None:
        self.schema = schema
        names = [
            "insert_workflow", "start_child", "record_operation", "inspect_operation",
            "record_transaction_operation", "gc_workflows", "gc_executors", "claim_chore",
            "get_outcome", "heartbeat", "strangers",
            "remove_executor", "timeline", "claim_own", "take_over",
            "release_executor",
            "list_operations", "finish_workflow_notify", "watch", "send_message",
            "send_from_workflow", "consume_message", "wait_deadline", "park", "wake_due",
            "set_event", "get_event", "get_all_events", "write_stream",
            "read_stream", "cancel", "cancel_expired", "resume", "fork", "record_operations",
            "claim_abandoned", "claim_failed_over", "insert_workflows", "finish_workflows",
            "lock_workflow", "lock_events",
            "load_operations_many", "served",
        ]  # fmt: skip
        # Notifications of this schema: short and fixed-length whatever the schema name.
        self.channel = channel_for(schema)
        self._sql = {name: sqlfile.statement(name, schema, dialect) for name in names}
        # The listing by the filter that leads (see list_workflows in queries.sql).
        self._lists = {
            (lead, order): sqlfile.statement(
                "list_workflows",
                schema,
                dialect,
                order=order,
                # A filter that leads is written as a range (see list_workflows).
                name_is=sqlfile.fragment(
                    "fragment_name_range" if "name" in lead.split() else "fragment_name_equal",
                    schema,
                ),
                queue_is=sqlfile.fragment(
                    "fragment_queue_range"
                    if "queue_name" in lead.split()
                    else "fragment_queue_equal",
                    schema,
                ),
                lead="".join(f"{column} {order}, " for column in lead.split()),
            )
            for lead in ("", "name", "queue_name", "queue_name name")
            for order in ("ASC", "DESC")
        }
        self._list_statuses = {
            order: sqlfile.statement("list_workflows_statuses", schema, dialect, order=order)
            for order in ("ASC", "DESC")
        }

    def insert_workflow(
        self,
        *,
        workflow_id: str,
        name: str,
        inputs: str,
        executor_id: str,
        max_recovery_attempts: int,
        codec: str,
        timeout: float | None = None,
        app_version: str | None = None,
    ) -> Statement:
        return bound(
            self._sql["insert_workflow"],
            {
                "id": workflow_id,
                "name": name,
                "inputs": inputs,
                "executor_id": executor_id,
                "max_recovery_attempts": max_recovery_attempts,
                "codec": codec,
                "timeout": timeout,
                "token": token(),
                "retry": False,
                "app_version": app_version,
            },
            combine=self._insert_workflows,
        )

    def _insert_workflows(
        self, statements: list[Statement]
    ) -> tuple[Statement, Callable[[Any], list[Any]]]:
        """Many starts as one INSERT; the same ID twice in a batch is created once."""
        columns = (
            "id", "name", "inputs", "executor_id", "max_recovery_attempts", "codec", "timeout",
            "token", "app_version",
        )  # fmt: skip
        params = batch_rows(statements, columns)
        ids = [st.params["id"] for st in statements]

        def split(result: Any) -> list[Any]:
            made = {row.id: [rows.Created(row.epoch, row.deadline)] for row in result}
            # Only the first start of an ID gets its row: the others attach to it.
            return [made.pop(i, []) for i in ids]

        return bound(self._sql["insert_workflows"], params), split

    def start_child(
        self,
        *,
        parent_id: str,
        epoch: int,
        step: int,
        workflow_id: str,
        name: str,
        inputs: str,
        executor_id: str,
        max_recovery_attempts: int,
        codec: str,
        timeout: float | None = None,
        app_version: str | None = None,
    ) -> Statement:
        return bound(
            self._sql["start_child"],
            {
                "parent_id": parent_id,
                "epoch": epoch,
                "step": step,
                "id": workflow_id,
                "name": name,
                "inputs": inputs,
                "executor_id": executor_id,
                "max_recovery_attempts": max_recovery_attempts,
                "codec": codec,
                "timeout": timeout,
                "token": token(),
                "retry": False,
                "app_version": app_version,
            },
        )

    def record_operation(
        self,
        *,
        workflow_id: str,
        epoch: int,
        step: int,
        name: str,
        kind: str,
        output: str | None,
        error: str | None,
        started_at: datetime,
        child_id: str | None = None,
        attempts: int | None = None,
    ) -> Statement:
        return bound(
            self._sql["record_operation"],
            {
                "workflow_id": workflow_id,
                "epoch": epoch,
                "step": step,
                "name": name,
                "kind": kind,
                "output": output,
                "error": error,
                "child_id": child_id,
                "started_at": started_at,
                "attempts": attempts,
            },
            combine=self._record_operations,
        )

    def record_transaction_operation(
        self,
        *,
        workflow_id: str,
        epoch: int,
        step: int,
        name: str,
        output: str,
        started_at: datetime,
        attempts: int | None = None,
    ) -> Statement:
        """A transaction step's checkpoint, for its own transaction (it fails, rolling the
        transaction back, when it writes no row)."""
        return bound(
            self._sql["record_transaction_operation"],
            {
                "workflow_id": workflow_id,
                "epoch": epoch,
                "step": step,
                "name": name,
                "kind": "transaction",
                "output": output,
                "started_at": started_at,
                "attempts": attempts,
            },
        )

    def _record_operations(
        self, statements: list[Statement]
    ) -> tuple[Statement, Callable[[Any], list[Any]]]:
        """Many checkpoints as one INSERT of arrays; each learns whether its row went in."""
        columns = (
            "workflow_id", "epoch", "step", "name", "kind", "output", "error", "child_id",
            "started_at", "attempts",
        )  # fmt: skip
        params = batch_rows(statements, columns)
        keys = [(st.params["workflow_id"], st.params["step"]) for st in statements]

        def split(result: Any) -> list[Any]:
            written = {(row.workflow_id, row.step) for row in result}
            return [1 if key in written else 0 for key in keys]

        return replace(bound(self._sql["record_operations"], params), prepare=False), split

    def inspect_operation(self, workflow_id: str, step: int) -> Statement:
        return bound(
            self._sql["inspect_operation"],
            {"workflow_id": workflow_id, "step": step},
        )

    def finish_workflow(
        self, *, workflow_id: str, epoch: int, status: str, output: str | None, error: str | None
    ) -> Statement:
        return bound(
            self._sql["finish_workflow_notify"],
            {
                "workflow_id": workflow_id,
                "epoch": epoch,
                "status": status,
                "output": output,
                "error": error,
                "channel": self.channel,
            },
            combine=self._finish_workflows,
        )

    def _finish_workflows(
        self, statements: list[Statement]
    ) -> tuple[Statement, Callable[[Any], list[Any]]]:
        """Many outcomes as one UPDATE; each learns whether its row was finished."""
        columns = ("workflow_id", "epoch", "status", "output", "error")
        params: dict[str, Any] = batch_rows(statements, columns)
        params["channel"] = self.channel
        ids = [st.params["workflow_id"] for st in statements]

        def split(result: Any) -> list[Any]:
            done = {row.id for row in result}
            return [[rows.Finished(1 if i in done else 0, 0)] for i in ids]

        return replace(bound(self._sql["finish_workflows"], params), prepare=False), split

    def load_operations_many(self, workflow_ids: Sequence[str]) -> Statement:
        return bound(
            self._sql["load_operations_many"],
            {"ids": list(workflow_ids)},
        )

    def get_outcome(self, workflow_id: str) -> Statement:
        return bound(self._sql["get_outcome"], {"workflow_id": workflow_id})

    def heartbeat(
        self,
        *,
        executor_id: str,
        app_name: str | None,
        hostname: str,
        pid: int,
        lease: float,
        incarnation: str,
        pid_space: str | None,
        names: Sequence[str] = (),
        queues: Sequence[str] = (),
        replaces: str | None = None,
        worker_clock: datetime | None = None,
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
    ) -> Statement:
        """The beat of the engine ``incarnation``; it takes the row from another holder
        only when that one's lease expired or it is ``replaces`` (found gone). It records
        ``app_version`` and the ``versions`` it recovers (None: any), and surveys only
        work of those versions; ``worker_clock``: this process's clock as it sends the
        beat (for doctor)."""
        return bound(
            self._sql["heartbeat"],
            {
                "id": executor_id,
                "app_name": app_name,
                "hostname": hostname,
                "pid": pid,
                "lease_seconds": lease,
                "incarnation": incarnation,
                "pid_space": pid_space,
                "names": list(names),
                "queues": list(queues),
                "replaces": replaces,
                "worker_clock": worker_clock,
                "app_version": app_version,
                "versions": _versions(versions),
            },
        )

    def remove_executor(self, executor_id: str, incarnation: str) -> Statement:
        return bound(self._sql["remove_executor"], {"id": executor_id, "incarnation": incarnation})

    def strangers(self, names: Sequence[str], queues: Sequence[str]) -> Statement:
        return bound(self._sql["strangers"], {"names": list(names), "queues": list(queues)})

    def served(self, name: str, queue: str | None, version: str | None = None) -> Statement:
        """Whether a live executor serves ``name`` (on ``queue``), recovering ``version``."""
        return bound(self._sql["served"], {"name": name, "queue": queue, "version": version})

    def timeline(self) -> Statement:
        """The database's time and the server's WAL timeline (a failover changes it)."""
        return bound(self._sql["timeline"], {})

    def claim_own(
        self,
        executor_id: str,
        names: Sequence[str],
        limit: int,
        before: datetime,
        *,
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
        after: Sequence[str] = (),
    ) -> Statement:
        """Own leftovers of ``versions`` (None: any), oldest first, after the rows of
        ``after`` (the IDs the previous batch claimed); those without a version take
        ``app_version`` (so do the other recovery claims)."""
        return self._claim_named(
            "claim_own",
            executor_id,
            names,
            limit,
            app_version,
            versions,
            before=before,
            after=list(after),
        )

    def claim_abandoned(
        self,
        executor_id: str,
        abandoned: Mapping[str, int],
        *,
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
    ) -> Statement:
        return bound(
            self._sql["claim_abandoned"],
            {
                "app_version": app_version,
                "versions": _versions(versions),
                "executor_id": executor_id,
                "channel": self.channel,
                "ids": list(abandoned),
                "epochs": list(abandoned.values()),
                "token": token(),
                "retry": False,
            },
        )

    def claim_failed_over(
        self,
        executor_id: str,
        names: Sequence[str],
        limit: int,
        *,
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
    ) -> Statement:
        """After a failover: every unfinished workflow of this executor with an epoch
        from an earlier timeline, anew."""
        return self._claim_named(
            "claim_failed_over", executor_id, names, limit, app_version, versions
        )

    def release_executor(self, executor_id: str, incarnation: str) -> Statement:
        """End this engine's lease now (shutdown): others take its work over at once."""
        return bound(self._sql["release_executor"], {"id": executor_id, "incarnation": incarnation})

    def take_over(
        self,
        executor_id: str,
        names: Sequence[str],
        limit: int,
        *,
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
    ) -> Statement:
        return self._claim_named("take_over", executor_id, names, limit, app_version, versions)

    def _claim_named(
        self,
        query: str,
        executor_id: str,
        names: Sequence[str],
        limit: int,
        app_version: str | None,
        versions: Sequence[str] | None,
        **more: Any,
    ) -> Statement:
        """A claim of up to ``limit`` workflows of ``names`` for ``executor_id``."""
        return bound(
            self._sql[query],
            {
                "app_version": app_version,
                "versions": _versions(versions),
                "executor_id": executor_id,
                "names": list(names),
                "limit": limit,
                "channel": self.channel,
                "token": token(),
                "retry": False,
                **more,
            },
        )

    def list_workflows(
        self,
        *,
        status: Sequence[str] | None,
        name: str | None,
        ids: Sequence[str] | None,
        created_after: datetime | None,
        created_before: datetime | None,
        limit: int | None,
        offset: int,
        descending: bool,
        queue: str | None = None,
        after: tuple[datetime, str] | None = None,
        app_version: str | None = None,
    ) -> Statement:
        order = "DESC" if descending else "ASC"
        if status is not None and len(status) > 1:
            query = self._list_statuses[order]
        elif ids is not None or status is not None:
            query = self._lists[("", order)]  # by primary key, or by status's index
        elif name is not None and queue is not None:
            query = self._lists[("queue_name name", order)]
        elif name is not None:
            query = self._lists[("name", order)]
        elif queue is not None:
            query = self._lists[("queue_name", order)]
        else:
            query = self._lists[("", order)]
        return bound(
            query,
            {
                "queue": queue,
                # a cursor comes after in the listing's order: older when newest first
                "before_at": after[0] if after is not None and descending else None,
                "before_id": after[1] if after is not None and descending else None,
                "after_at": after[0] if after is not None and not descending else None,
                "after_id": after[1] if after is not None and not descending else None,
                "status": list(status) if status is not None and len(status) != 1 else None,
                "one_status": status[0] if status is not None and len(status) == 1 else None,
                "app_version": app_version,
                "name": name,
                "ids": list(ids) if ids is not None else None,
                "created_after": created_after,
                "created_before": created_before,
                "limit": limit,
                "offset": offset,
            },
        )

    def list_operations(self, workflow_id: str) -> Statement:
        return bound(self._sql["list_operations"], {"workflow_id": workflow_id})

    # ------------------------------------------------------------------ waits (0002)

    def lock_workflow(self, workflow_id: str) -> Statement:
        return bound(self._sql["lock_workflow"], {"workflow_id": workflow_id})

    def lock_events(self, workflow_id: str) -> Statement:
        """Until commit: no set_event of ``workflow_id`` and no park waiting for one."""
        return bound(
            self._sql["lock_events"], {"workflow_id": workflow_id, "channel": self.channel}
        )

    def watch(self, workflow_id: str) -> Statement:
        return bound(self._sql["watch"], {"workflow_id": workflow_id})

    def send_message(
        self, *, workflow_id: str, topic: str | None, value: str, idempotency_key: str | None
    ) -> Statement:
        return bound(
            self._sql["send_message"],
            {
                "workflow_id": workflow_id,
                "topic": topic,
                "value": value,
                # Without a key of the caller's, each send gets its own: a retry after a
                # lost reply finds its first attempt's message instead of adding another.
                "idempotency_key": idempotency_key or f"auto:{token()}",
                "channel": self.channel,
            },
        )

    def send_from_workflow(
        self,
        *,
        sender_id: str,
        epoch: int,
        step: int,
        name: str,
        started_at: datetime,
        workflow_id: str,
        topic: str | None,
        value: str,
        idempotency_key: str,
    ) -> Statement:
        return bound(
            self._sql["send_from_workflow"],
            {
                "sender_id": sender_id,
                "epoch": epoch,
                "step": step,
                "name": name,
                "started_at": started_at,
                "workflow_id": workflow_id,
                "topic": topic,
                "value": value,
                "idempotency_key": idempotency_key,
                "channel": self.channel,
            },
        )

    def consume_message(
        self,
        *,
        workflow_id: str,
        epoch: int,
        step: int,
        name: str,
        topic: str | None,
        started_at: datetime,
    ) -> Statement:
        return bound(
            self._sql["consume_message"],
            {
                "workflow_id": workflow_id,
                "epoch": epoch,
                "step": step,
                "name": name,
                "topic": topic,
                "started_at": started_at,
            },
        )

    def wait_deadline(
        self, *, workflow_id: str, epoch: int, step: int, deadline: datetime
    ) -> Statement:
        return bound(
            self._sql["wait_deadline"],
            {"workflow_id": workflow_id, "epoch": epoch, "step": step, "deadline": deadline},
        )

    def park(
        self,
        *,
        workflow_id: str,
        epoch: int,
        wake_at: datetime | None,
        wait_kind: str,
        wait_target: str | None = None,
        wait_topic: str | None = None,
    ) -> Statement:
        return bound(
            self._sql["park"],
            {
                "workflow_id": workflow_id,
                "epoch": epoch,
                "wake_at": wake_at,
                "wait_kind": wait_kind,
                "wait_target": wait_target,
                "wait_topic": wait_topic,
                "retry": False,
            },
        )

    def wake_due(
        self,
        executor_id: str,
        names: Sequence[str],
        limit: int,
        only_id: str | None = None,
        *,
        app_version: str | None = None,
        versions: Sequence[str] | None = None,
    ) -> Statement:
        """Due parked work of ``versions`` (None: any); work without one takes
        ``app_version``."""
        return bound(
            self._sql["wake_due"],
            {
                "app_version": app_version,
                "versions": _versions(versions),
                "executor_id": executor_id,
                "names": list(names),
                "limit": limit,
                "only_id": only_id,
                "channel": self.channel,
                "token": token(),
                "retry": False,
            },
        )

    def set_event(
        self,
        *,
        workflow_id: str,
        epoch: int,
        step: int,
        key: str,
        value: str,
        started_at: datetime,
        step_op: bool,
    ) -> Statement:
        return bound(
            self._sql["set_event"],
            {
                "workflow_id": workflow_id,
                "epoch": epoch,
                "step": step,
                "key": key,
                "value": value,
                "started_at": started_at,
                "step_op": step_op,
                "channel": self.channel,
            },
        )

    def get_event(self, workflow_id: str, key: str) -> Statement:
        return bound(self._sql["get_event"], {"workflow_id": workflow_id, "key": key})

    def get_all_events(self, workflow_id: str) -> Statement:
        return bound(self._sql["get_all_events"], {"workflow_id": workflow_id})

    def write_stream(
        self,
        *,
        workflow_id: str,
        epoch: int,
        step: int,
        key: str,
        value: str | None,
        closed: bool,
        started_at: datetime,
    ) -> Statement:
        return bound(
            self._sql["write_stream"],
            {
                "workflow_id": workflow_id,
                "epoch": epoch,
                "step": step,
                "key": key,
                "value": value,
                "closed": closed,
                "kind": "close_stream" if closed else "write_stream",
                "started_at": started_at,
                "channel": self.channel,
            },
        )

    def read_stream(self, workflow_id: str, key: str, after: int, skip: int) -> Statement:
        return bound(
            self._sql["read_stream"],
            {"workflow_id": workflow_id, "key": key, "after": after, "skip": skip},
        )

    # ------------------------------------------------------------------ retention

    def gc_workflows(self, age: float, batch: int, statuses: Sequence[str]) -> Statement:
        """Delete up to ``batch`` workflows that finished with one of ``statuses`` more
        than ``age`` seconds ago (by the database's clock; retention.sql)."""
        return bound(
            self._sql["gc_workflows"], {"age": age, "batch": batch, "statuses": list(statuses)}
        )

    def claim_chore(self, name: str, every: float) -> Statement:
        """Take the fleet's turn at chore ``name`` if it is due (a row back: taken)."""
        return bound(self._sql["claim_chore"], {"name": name, "every": every})

    def gc_executors(self, age: float) -> Statement:
        """Delete executor rows whose lease ended ``age`` seconds ago and own nothing."""
        return bound(self._sql["gc_executors"], {"age": age})

    def cancel(self, workflow_id: str, children: bool) -> Statement:
        return bound(
            self._sql["cancel"],
            {"workflow_id": workflow_id, "children": children, "channel": self.channel},
        )

    def cancel_expired(self) -> Statement:
        return bound(self._sql["cancel_expired"], {"channel": self.channel})

    def resume(self, workflow_id: str, epoch: int) -> Statement:
        """Run it again from its last checkpoint; ``epoch``: as read before (see .sql)."""
        return bound(
            self._sql["resume"],
            {"workflow_id": workflow_id, "epoch": epoch, "channel": self.channel, "retry": False},
        )

    def fork(self, workflow_id: str, new_id: str, from_step: int) -> Statement:
        return bound(
            self._sql["fork"],
            {
                "workflow_id": workflow_id,
                "new_id": new_id,
                "from_step": from_step,
                "channel": self.channel,
                "retry": False,
            },
        )
