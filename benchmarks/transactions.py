"""Transaction steps: what one ``@app.transaction`` inserting a row costs per step.

A transaction step commits the user's INSERT and its checkpoint in one transaction, so
it should cost about one INSERT+COMMIT: the figure is read against the floor (a bare
single-row INSERT+COMMIT from psycopg, same run) and against a plain no-op step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.core import Context, Measurement, Target, benchmark, median_ms, per_call
from benchmarks.floor import FLOOR

STEPS = 10


@benchmark("transaction-step")
def transaction_step(ctx: Context) -> list[Measurement]:
    """Sequential workflows of 10 transaction steps, each inserting one row."""
    n = ctx.size(100, 20)
    samples: dict[str, list[float]] = {k: [] for k in ("zero", "plain", "tx", "tx_rc", "tx_pipe")}
    with ctx.app() as app:
        table = sql.Identifier(app.schema, "bench_rows")
        with ctx.connect() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                    "payload jsonb NOT NULL)"
                ).format(table)
            )
        insert = sql.SQL("INSERT INTO {} (payload) VALUES (%s::jsonb)").format(table)

        @app.step(name="bench.noop")
        def noop() -> None:
            return None

        @app.transaction(name="bench.tx_insert")
        def tx_insert(conn: psycopg.Connection[Any]) -> None:
            conn.execute(insert, ("null",), prepare=True)

        @app.transaction(name="bench.tx_insert_rc", isolation="read committed")
        def tx_insert_rc(conn: psycopg.Connection[Any]) -> None:
            conn.execute(insert, ("null",), prepare=True)

        @app.transaction(name="bench.tx_insert_pipe", pipeline=True)
        def tx_insert_pipe(conn: psycopg.Connection[Any]) -> None:
            conn.execute(insert, ("null",), prepare=True)

        steps: dict[str, Callable[[], None]] = {
            "plain": noop,
            "tx": tx_insert,
            "tx_rc": tx_insert_rc,
            "tx_pipe": tx_insert_pipe,
        }

        @app.workflow(name="bench.mixed")
        def mixed(kind: str, k: int) -> int:
            fn = steps.get(kind)
            if fn is not None:
                for _ in range(k):
                    fn()
            return k

        def calling(kind: str, k: int = STEPS) -> Callable[[], int]:
            return lambda: mixed(kind, k)

        runs = {"zero": calling("zero", 0), **{kind: calling(kind) for kind in steps}}
        for run in runs.values():
            per_call(run, 20)  # warm up: prepare on the pooled connections
        for _ in range(ctx.repeats):
            for key, run in runs.items():
                samples[key].append(median_ms(per_call(run, n)))

    def per_step(key: str) -> list[float]:
        return [(t - z) / STEPS for t, z in zip(samples[key], samples["zero"], strict=True)]

    note = f"(t10 - t0) / 10, median of {n} workflows per repeat"
    return [
        Measurement(
            "tx.per_step", "transaction step inserting 1 row (serializable)", "ms",
            per_step("tx"), ratio_to=FLOOR, note=note, target=Target("max_x_floor", 1.3),
        ),
        Measurement(
            "tx.per_step_rc", "transaction step inserting 1 row (read committed)", "ms",
            per_step("tx_rc"), ratio_to=FLOOR, note=note,
        ),
        Measurement(
            "tx.per_step_pipelined", "the same, serializable, pipeline=True", "ms",
            per_step("tx_pipe"), ratio_to=FLOOR, note=note,
        ),
        Measurement(
            "tx.plain_per_step", "plain no-op step, same run", "ms", per_step("plain"),
            ratio_to=FLOOR, note=note,
        ),
    ]  # fmt: skip
