"""What the checks look at, read from the database in one go: durably's tables (workflows,
operations, messages, streams) and the suite's (expected outcomes, effects, stream reads,
the ledger of transaction steps and its counter).
Times are seconds since the epoch (PostgreSQL's clock and the workers' are the same
machine's clock)."""

# SQL here names the suite's schemas, module constants (never input).
# ruff: noqa: S608

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from chaos.config import CHAOS_SCHEMA, WF_SCHEMA

FINAL = frozenset({"SUCCESS", "ERROR", "CANCELLED", "DEAD_LETTER"})


@dataclass
class Workflow:
    id: str
    name: str
    status: str
    inputs: Any
    output: Any
    error: Any
    executor_id: str | None
    epoch: int
    queue: str | None
    parent_id: str | None
    created_at: float
    completed_at: float | None


@dataclass
class Op:
    workflow_id: str
    step: int
    name: str
    kind: str
    output: Any
    child_id: str | None
    completed_at: float
    epoch: int | None


@dataclass
class Message:
    id: int
    workflow_id: str
    value: Any
    key: str | None
    consumed_at: float | None
    consumed_step: int | None


@dataclass
class Effect:
    id: int
    workflow_id: str
    step: int | None
    epoch: int | None
    pid: int
    started_at: float
    ended_at: float
    label: str


@dataclass
class LedgerRow:
    """A row committed by a transaction step (``chaos.ledger``)."""

    id: int
    workflow_id: str
    step: int | None
    epoch: int | None
    name: str
    token: str
    pid: int
    at: float


@dataclass
class Expected:
    workflow_id: str
    shape: str
    workflow: str
    expected: Any
    queue: str | None
    meta: dict[str, Any]
    origin: str


@dataclass
class Snapshot:
    workflows: dict[str, Workflow] = field(default_factory=dict)
    ops: dict[str, list[Op]] = field(default_factory=lambda: defaultdict(list))
    messages: list[Message] = field(default_factory=list)
    streams: dict[str, list[tuple[int, Any, bool]]] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    expected: dict[str, Expected] = field(default_factory=dict)
    stream_reads: dict[str, tuple[list[Any], bool, str | None]] = field(default_factory=dict)
    ledger: list[LedgerRow] = field(default_factory=list)
    ledger_counter: int | None = None
    has_op_epoch: bool = False

    def op_at(self, workflow_id: str, step: int) -> Op | None:
        for op in self.ops.get(workflow_id, ()):
            if op.step == step:
                return op
        return None


def _epoch(column: str) -> str:
    return f"extract(epoch FROM {column})::float8"


def has_op_epoch(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        """SELECT 1 FROM information_schema.columns
           WHERE table_schema = %s AND table_name = 'operations' AND column_name = 'epoch'""",
        (WF_SCHEMA,),
    ).fetchone()
    return row is not None


def load(conn: psycopg.Connection[Any]) -> Snapshot:
    """Read everything (inside the caller's transaction, if any)."""
    snap = Snapshot(has_op_epoch=has_op_epoch(conn))
    w, c = WF_SCHEMA, CHAOS_SCHEMA
    for r in conn.execute(
        f"""SELECT id, name, status, inputs, output, error, executor_id, epoch, queue_name,
                   parent_id, {_epoch("created_at")}, {_epoch("completed_at")}
            FROM {w}.workflows"""
    ):
        snap.workflows[r[0]] = Workflow(*r)
    epoch = "epoch" if snap.has_op_epoch else "NULL::bigint"
    for r in conn.execute(
        f"""SELECT workflow_id, step, name, kind, output, child_id, {_epoch("completed_at")},
                   {epoch}
            FROM {w}.operations ORDER BY workflow_id, step"""
    ):
        snap.ops[r[0]].append(Op(*r))
    for r in conn.execute(
        f"""SELECT id, workflow_id, value, idempotency_key, {_epoch("consumed_at")},
                   consumed_step
            FROM {w}.messages ORDER BY id"""
    ):
        snap.messages.append(Message(*r))
    for r in conn.execute(
        f"SELECT workflow_id, key, step, value, closed FROM {w}.streams ORDER BY 1, 2, 3"
    ):
        snap.streams.setdefault(f"{r[0]}/{r[1]}", []).append((r[2], r[3], r[4]))
    for r in conn.execute(
        f"""SELECT id, workflow_id, step, epoch, pid, started_at, ended_at, label
            FROM {c}.effects ORDER BY id"""
    ):
        snap.effects.append(Effect(*r))
    for r in conn.execute(
        f"SELECT workflow_id, shape, workflow, expected, queue, meta, origin FROM {c}.expected"
    ):
        snap.expected[r[0]] = Expected(*r)
    for r in conn.execute(f"SELECT workflow_id, got, complete, note FROM {c}.stream_reads"):
        snap.stream_reads[r[0]] = (r[1], r[2], r[3])
    for r in conn.execute(
        f"""SELECT id, workflow_id, step, epoch, name, token, pid, {_epoch("at")}
            FROM {c}.ledger ORDER BY id"""
    ):
        snap.ledger.append(LedgerRow(*r))
    row = conn.execute(f"SELECT n FROM {c}.ledger_counter WHERE id = 1").fetchone()
    snap.ledger_counter = None if row is None else int(row[0])
    return snap
