"""The suite's own tables (schema ``chaos``): expected outcomes, side effects of step bodies,
what the driver read from streams, and the ledger that transaction steps write. The
suite's own writes are idempotent statements, so a retry after an unknown outcome never
doubles a row; the ledger is written only by transaction steps, and has no unique key on
purpose: a transaction committed twice shows as two rows."""

# SQL here names the suite's schemas, module constants (never input).
# ruff: noqa: S608

from __future__ import annotations

import json
import time

from chaos.config import CHAOS_SCHEMA, WF_SCHEMA
from chaos.retry import Conn
from chaos.shapes import Start

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {CHAOS_SCHEMA};
CREATE TABLE IF NOT EXISTS {CHAOS_SCHEMA}.expected (
    workflow_id text PRIMARY KEY,
    shape       text NOT NULL,
    workflow    text NOT NULL,
    args        jsonb NOT NULL,
    queue       text,
    expected    jsonb,
    meta        jsonb NOT NULL DEFAULT '{{}}',
    origin      text NOT NULL,          -- 'driver' or 'worker-<slot>'
    recorded_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {CHAOS_SCHEMA}.effects (
    id          bigserial PRIMARY KEY,
    token       text NOT NULL UNIQUE,   -- one per body execution: retries insert once
    workflow_id text NOT NULL,
    step        integer,
    epoch       bigint,
    pid         integer NOT NULL,
    started_at  double precision NOT NULL,
    ended_at    double precision NOT NULL,
    label       text NOT NULL
);
CREATE INDEX IF NOT EXISTS effects_step ON {CHAOS_SCHEMA}.effects (workflow_id, step);
CREATE TABLE IF NOT EXISTS {CHAOS_SCHEMA}.stream_reads (
    workflow_id text PRIMARY KEY,
    got         jsonb NOT NULL,
    complete    boolean NOT NULL,
    note        text
);
-- One row per committed transaction step (chaos.ledger). No unique constraint on
-- (workflow_id, step): durably's exactly-once is what keeps it to one.
CREATE TABLE IF NOT EXISTS {CHAOS_SCHEMA}.ledger (
    id          bigserial PRIMARY KEY,
    workflow_id text NOT NULL,
    step        integer,
    epoch       bigint,
    name        text NOT NULL,          -- the transaction step's name
    token       text NOT NULL,          -- also in the step's recorded output
    pid         integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS ledger_step ON {CHAOS_SCHEMA}.ledger (workflow_id, step);
-- The shared counter the counting transactions read, then write (serializable).
CREATE TABLE IF NOT EXISTS {CHAOS_SCHEMA}.ledger_counter (
    id integer PRIMARY KEY,
    n  bigint NOT NULL
);
INSERT INTO {CHAOS_SCHEMA}.ledger_counter (id, n) VALUES (1, 0) ON CONFLICT DO NOTHING;
"""


def create(conn: Conn) -> None:
    conn.execute(DDL)


def record_expected(conn: Conn, start: Start, origin: str, deadline: float | None = None) -> None:
    """Record what ``start`` must return, before it is started."""
    conn.execute(
        f"""INSERT INTO {CHAOS_SCHEMA}.expected
            (workflow_id, shape, workflow, args, queue, expected, meta, origin, recorded_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
        (
            start.workflow_id, start.shape, start.workflow, json.dumps(start.args), start.queue,
            json.dumps(start.expected), json.dumps(start.meta), origin, time.time(),
        ),
        deadline,
    )  # fmt: skip


def unstarted(conn: Conn, origin: str, deadline: float | None = None) -> list[Start]:
    """Recorded starts of ``origin`` whose workflow does not exist (the start was cut
    short by a kill or an outage): to be started again, by the same ID."""
    rows = conn.query(
        f"""SELECT e.workflow_id, e.shape, e.workflow, e.args, e.expected, e.queue, e.meta
            FROM {CHAOS_SCHEMA}.expected e
            WHERE e.origin = %s AND NOT EXISTS (
                SELECT 1 FROM {WF_SCHEMA}.workflows w WHERE w.id = e.workflow_id)
            ORDER BY e.recorded_at""",
        (origin,),
        deadline,
    )
    return [Start(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def record_stream_read(
    conn: Conn, workflow_id: str, got: list[object], complete: bool, note: str | None
) -> None:
    conn.execute(
        f"""INSERT INTO {CHAOS_SCHEMA}.stream_reads (workflow_id, got, complete, note)
            VALUES (%s, %s, %s, %s) ON CONFLICT (workflow_id) DO UPDATE
            SET got = EXCLUDED.got, complete = EXCLUDED.complete, note = EXCLUDED.note""",
        (workflow_id, json.dumps(got), complete, note),
    )
