"""The ledger workload: workflows of transaction steps (``@app.transaction``), each writing
one row into ``chaos.ledger`` in the transaction that also records its checkpoint.

A row carries the step's workflow, position and epoch and a fresh token that the step
also returns, so the checks can pair every committed row with its recorded output. The
counting steps read the shared ``chaos.ledger_counter`` row, wait a few milliseconds and
write it back, under serializable isolation: concurrent ones really conflict and are run
again. The read committed step holds its transaction open for 50-250 ms, so that kills,
pauses, restarts and cut connections land inside open transactions.
"""

# SQL here names the suite's schema, a module constant (never input).
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import psycopg

import durably
from chaos import shapes
from chaos.config import CHAOS_SCHEMA
from chaos.effects import Body, Recorder

INSERT = f"""INSERT INTO {CHAOS_SCHEMA}.ledger (workflow_id, step, epoch, name, token, pid)
             VALUES (%s, %s, %s, %s, %s, %s)"""
READ_COUNTER = f"SELECT n FROM {CHAOS_SCHEMA}.ledger_counter WHERE id = 1"
WRITE_COUNTER = f"UPDATE {CHAOS_SCHEMA}.ledger_counter SET n = %s WHERE id = 1"
# Under a burst of counting transactions (after an outage, say) a conflict may repeat.
CONFLICT_RETRIES = 30


def _row(body: Body, name: str) -> tuple[tuple[Any, ...], str]:
    """The ledger row's parameters, and its token."""
    token = uuid.uuid4().hex
    return (body.workflow_id, body.step, body.epoch, name, token, os.getpid()), token


def register(app: durably.App, rec: Recorder) -> list[durably.Workflow[Any, Any]]:
    """Declare the ledger's transactions and workflows on ``app``."""

    @app.transaction(name=shapes.LEDGER_COUNT, conflict_retries=CONFLICT_RETRIES)
    def count(conn: psycopg.Connection[Any], v: int, ms: int) -> dict[str, Any]:
        with rec.body("ledger_count") as body:
            row = conn.execute(READ_COUNTER).fetchone()
            assert row is not None
            time.sleep(ms / 1000)
            n = int(row[0]) + 1
            conn.execute(WRITE_COUNTER, (n,))
            params, token = _row(body, shapes.LEDGER_COUNT)
            conn.execute(INSERT, params)
            return {"token": token, "count": n, "v": v + 1}

    @app.transaction(name=shapes.LEDGER_RC, isolation="read committed")
    def read_committed(conn: psycopg.Connection[Any], a: int, ms: int) -> dict[str, Any]:
        with rec.body("ledger_rc") as body:
            params, token = _row(body, shapes.LEDGER_RC)
            conn.execute(INSERT, params)
            time.sleep(ms / 1000)  # the transaction stays open meanwhile
            return {"token": token, "v": 2 * a}

    @app.transaction(name=shapes.LEDGER_PIPE, pipeline=True)
    def pipelined(conn: psycopg.Connection[Any], b: int) -> dict[str, Any]:
        with rec.body("ledger_pipe") as body:
            params, token = _row(body, shapes.LEDGER_PIPE)
            conn.execute(INSERT, params)  # sent, not waited for: write-only
            return {"token": token, "v": b + 3}

    @app.transaction(name=shapes.LEDGER_COUNT_ASYNC, conflict_retries=CONFLICT_RETRIES)
    async def count_async(conn: psycopg.AsyncConnection[Any], v: int, ms: int) -> dict[str, Any]:
        async with rec.body_async("ledger_count_async") as body:
            cur = await conn.execute(READ_COUNTER)
            row = await cur.fetchone()
            assert row is not None
            await asyncio.sleep(ms / 1000)
            n = int(row[0]) + 1
            await conn.execute(WRITE_COUNTER, (n,))
            params, token = _row(body, shapes.LEDGER_COUNT_ASYNC)
            await conn.execute(INSERT, params)
            return {"token": token, "count": n, "v": v + 1}

    @app.transaction(name=shapes.LEDGER_PIPE_ASYNC, isolation="read committed", pipeline=True)
    async def pipelined_async(conn: psycopg.AsyncConnection[Any], v: int) -> dict[str, Any]:
        async with rec.body_async("ledger_pipe_async") as body:
            params, token = _row(body, shapes.LEDGER_PIPE_ASYNC)
            await conn.execute(INSERT, params)
            return {"token": token, "v": v + 3}

    @app.workflow(name=shapes.LEDGER)
    def ledger(v: int, count_ms: int, hold_ms: int) -> int:
        a = count(v, count_ms)["v"]
        b = read_committed(a, hold_ms)["v"]
        return int(pipelined(b)["v"])

    @app.workflow(name=shapes.LEDGER_ASYNC)
    async def ledger_async(v: int, count_ms: int) -> int:
        x, y = await asyncio.gather(count_async(v, count_ms), pipelined_async(v))
        return int(x["v"]) + int(y["v"])

    return [ledger, ledger_async]
