"""What ``enqueue_in`` adds to a user's transaction: one INSERT + COMMIT of the user's own
alone, against the same with ``app.enqueue_in`` in it, sequential on one connection.

    python -m benchmarks.outbox                 # embedded PostgreSQL 18, N = 2000
    python -m benchmarks.outbox --n 500 --database-url postgresql://...

It starts the embedded server of the benchmark suite (``$TMPDIR/durably-bench-<uid>``)
unless given a URL, makes a fresh schema with a table of the "user's" and a declared
queue (the app is never launched, so the enqueued work just waits), and times each
transaction (``with conn.transaction():`` = BEGIN, the statements, COMMIT). The two
kinds run in alternating blocks so that drift of the machine hits both alike. It prints
the median ms per transaction of each, their ratio, and the statements durably sent per
``enqueue_in``, counted at the caller's connection (every statement of durably's goes
through a cursor of it; BEGIN and COMMIT are the user's and not counted).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any, ClassVar

import psycopg
from psycopg import sql

import durably
from benchmarks.core import DEFAULT_DATA_DIR, median_ms, per_call
from durably import embedded

BLOCKS = 4  # alternating blocks of each kind
WARM_UP = 100


class CountingCursor(psycopg.Cursor[Any]):
    """Counts the statements sent through the cursors of its connection."""

    sent: ClassVar[int] = 0

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.sent += 1
        return super().execute(query, *args, **kwargs)


def measure(url: str, n: int) -> None:
    schema = f"bench_outbox_{uuid.uuid4().hex[:10]}"
    app = durably.App(url, schema=schema)
    app.queue("outbox")

    @app.workflow(name="noop")
    def noop(order: int) -> int:
        return order

    app.engine  # connect and create the schema (not launched: nothing is claimed)  # noqa: B018
    table = sql.Identifier(schema, "orders")
    insert = sql.SQL("INSERT INTO {} (payload) VALUES (%s::jsonb)").format(table).as_string()
    try:
        with psycopg.connect(url, autocommit=True, cursor_factory=CountingCursor) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                    "payload jsonb NOT NULL)"
                ).format(table)
            )
            counter = iter(range(10**9))

            def alone() -> None:
                with conn.transaction():
                    conn.execute(insert, ('{"order": 1}',))

            def with_enqueue() -> None:
                with conn.transaction():
                    conn.execute(insert, ('{"order": 1}',))
                    app.enqueue_in(conn, "outbox", noop, next(counter))

            per_call(alone, WARM_UP)
            per_call(with_enqueue, WARM_UP)
            block = max(1, n // BLOCKS)
            alone_s: list[float] = []
            enqueue_s: list[float] = []
            for _ in range(BLOCKS):
                alone_s += per_call(alone, block)
                enqueue_s += per_call(with_enqueue, block)

            before = CountingCursor.sent
            calls = 100
            with conn.transaction():
                for _ in range(calls):
                    app.enqueue_in(conn, "outbox", noop, next(counter))
            statements = (CountingCursor.sent - before) / calls
    finally:
        app.shutdown(grace=0)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    a, b = median_ms(alone_s), median_ms(enqueue_s)
    print(f"transactions of each kind: {len(alone_s)} (sequential, one connection)")
    print(f"INSERT + COMMIT                    median {a:.3f} ms")
    print(f"INSERT + enqueue_in + COMMIT       median {b:.3f} ms")
    print(f"ratio                              {b / a:.2f}x  (+{b - a:.3f} ms per enqueue_in)")
    print(f"statements per enqueue_in          {statements:g}  (durably's, on the caller's conn)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outbox", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="transactions of each kind")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DURABLY_BENCH_DATABASE_URL"),
        help="measure this server instead of the embedded one",
    )
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    args = parser.parse_args(argv)
    if args.database_url:
        measure(args.database_url, args.n)
        return
    server = embedded.acquire(args.data_dir)
    try:
        measure(server.url, args.n)
    finally:
        server.release()


if __name__ == "__main__":
    sys.exit(main())
