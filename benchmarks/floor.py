"""The Postgres floor: what one round trip and one durable commit cost, with no durably at all.

Every durably figure is read against these: a step on the hot path is one fenced INSERT
committed on its own (when alone), so its latency cannot be lower than one single-row
INSERT + COMMIT on one connection.
"""

from __future__ import annotations

from psycopg import sql

from benchmarks.core import Context, Measurement, benchmark, median_ms, per_call

FLOOR = "floor.commit"
FLOOR_RATE = "floor.commits_per_s"


@benchmark("floor")
def postgres_floor(ctx: Context) -> list[Measurement]:
    """Postgres floor: single-row INSERT+COMMIT (autocommit, prepared) and SELECT 1."""
    n = ctx.size(500, 100)
    commit_ms: list[float] = []
    select_ms: list[float] = []
    with ctx.schema("bench_floor") as schema, ctx.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        table = sql.Identifier(schema, "scratch")
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                "payload jsonb NOT NULL)"
            ).format(table)
        )
        insert = sql.SQL("INSERT INTO {} (payload) VALUES (%s::jsonb)").format(table).as_string()
        params = ("null",)

        def one_insert() -> None:
            conn.execute(insert, params, prepare=True)

        def one_select() -> None:
            conn.execute("SELECT 1", prepare=True).fetchone()

        per_call(one_insert, 50)  # warm up: prepare, fill the cache
        per_call(one_select, 50)
        for _ in range(ctx.repeats):
            commit_ms.append(median_ms(per_call(one_insert, n)))
            select_ms.append(median_ms(per_call(one_select, n)))
    return [
        Measurement(
            FLOOR,
            "PG floor: 1-row INSERT+COMMIT, 1 connection",
            "ms",
            commit_ms,
            ratio_to=FLOOR,
            note=f"median of {n} per repeat",
        ),
        Measurement(
            FLOOR_RATE,
            "PG floor: sequential commits/s (1 / floor)",
            "/s",
            [1000.0 / v for v in commit_ms],
            ratio_to=FLOOR_RATE,
        ),
        Measurement(
            "floor.select1",
            "PG round trip: SELECT 1 (no commit)",
            "ms",
            select_ms,
            ratio_to=FLOOR,
        ),
    ]
