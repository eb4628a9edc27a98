"""PostgreSQL 18 I/O settings of the embedded server, measured on durably's read-heavy paths
(``--only settings``; not in the default run: it restarts a server dozens of times).

It uses a second embedded data directory of its own (``<data dir>-settings``, kept between
runs) holding one million workflow rows in durably's tables (made once), and for each of
``io_method=sync``, ``worker`` with 3 I/O workers (PostgreSQL's default) and ``worker``
with 6 (durably's embedded default) it times, each on a freshly restarted server (empty
shared buffers; with ``--cold`` also an empty OS page cache):

- ``app.list_workflows(status="ERROR", limit=1000)``: durably's own listing statement,
  and the same for a status no row has (``DEAD_LETTER``, limit 50): the worst case;
- the dashboard's count per status (a sequential scan of the whole table);
- a recovery/takeover scan: the pending workflows of dead executors (1% of the rows,
  scattered over the table: a bitmap heap scan, the read that AIO can speed up);
- a retention-style DELETE of the oldest 10% of finished workflows (rolled back);
- and the commit path, warm: one single-row INSERT + COMMIT (median of 300).

The fact sheet (/work/shared/PG18-AIO.md) predicts: only scattered cold reads care about
the method; commits never do.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import durably
from benchmarks.core import Context, Measurement, benchmark, per_call
from durably import embedded
from durably.info import list_query
from durably.store.statements import Statements

SCHEMA = "settings_bench"
ROWS = 1_000_000
CONFIGS: tuple[tuple[str, dict[str, str]], ...] = (
    ("sync", {"io_method": "sync"}),
    ("worker:3", {"io_method": "worker", "io_workers": "3"}),
    ("worker:6", {"io_method": "worker", "io_workers": "6"}),
)


class Cluster:
    """The settings benchmark's own embedded server, restarted at will."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = embedded.acquire(path)

    @property
    def url(self) -> str:
        return self.server.url

    def restart(self) -> None:
        """Stop and start: shared buffers are empty afterwards."""
        self.server.release()  # the only user: this stops the server
        embedded.stop(self.path)  # in case another process had it too
        self.server = embedded.acquire(self.path)

    def configure(self, settings: dict[str, str]) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET io_workers")
            for name, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        self.restart()

    def show(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(f"SHOW {name}").fetchone()
        return str(row[0]) if row else "?"

    def close(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET io_method")
            conn.execute("ALTER SYSTEM RESET io_workers")
        self.server.release()


def populate(url: str, log: Callable[[str], None]) -> None:
    """One million workflow rows in durably's schema (once; kept in the data dir):
    97% SUCCESS, 1% ERROR, 1% CANCELLED, 1% PENDING of 10 dead executors, created over
    30 days in insertion order."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (SCHEMA,),
        ).fetchone()
        if row is not None and row[0] == f"populated {ROWS}":
            return
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    app = durably.App(url, schema=SCHEMA)
    _ = app.engine  # creates durably's tables
    app.shutdown(grace=0)
    log(f"populating {ROWS:,} workflow rows (once per data directory)")
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"""
            INSERT INTO "{SCHEMA}".workflows
                (id, name, status, inputs, output, error, executor_id, epoch,
                 max_recovery_attempts, created_at, updated_at, completed_at)
            SELECT 'wf-' || lpad(i::text, 8, '0'),
                   'orders.checkout',
                   s.status,
                   jsonb_build_object('args', jsonb_build_array('order-' || i, i % 977),
                                      'kwargs', '{{}}'::jsonb),
                   CASE WHEN s.status = 'SUCCESS'
                        THEN to_jsonb('receipt-' || md5(i::text)) END,
                   CASE WHEN s.status = 'ERROR' THEN jsonb_build_object(
                        'type', 'PaymentDeclined', 'message', 'card declined ' || i) END,
                   CASE WHEN s.status = 'PENDING' THEN 'dead-executor-' || (i % 10) END,
                   2, 50, t.created, t.created + interval '2 seconds',
                   CASE WHEN s.status <> 'PENDING' THEN t.created + interval '2 seconds' END
            FROM generate_series(1, {ROWS}) AS i,
                 LATERAL (SELECT CASE (i::bigint * 7919) % 100 WHEN 0 THEN 'ERROR'
                                     WHEN 1 THEN 'CANCELLED' WHEN 2 THEN 'PENDING'
                                     ELSE 'SUCCESS' END AS status) s,
                 LATERAL (SELECT now() - interval '30 days'
                                 + (i * interval '30 days') / {ROWS} AS created) t
        """)  # fmt: skip
        conn.execute(f'VACUUM (ANALYZE) "{SCHEMA}".workflows')
        conn.execute("CHECKPOINT")
        conn.execute(f"COMMENT ON SCHEMA \"{SCHEMA}\" IS 'populated {ROWS}'")
    log(f"populated in {time.perf_counter() - started:.0f} s")


def drop_os_cache() -> bool:
    """Empty the OS page cache (root only); False when not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def cold_paths(url: str) -> dict[str, tuple[str, str, dict[str, Any] | None, bool]]:
    """name -> (label, SQL, params, rolled back)."""

    def listing(status: str, limit: int) -> Any:
        return list_query(
            Statements(SCHEMA), status=status, name=None, ids=None, created_after=None,
            created_before=None, limit=limit, offset=0, descending=False,
        )  # fmt: skip

    errors, dead = listing("ERROR", 1000), listing("DEAD_LETTER", 50)
    w = f'"{SCHEMA}".workflows'
    e = f'"{SCHEMA}".executors'
    return {
        "list": (
            "app.list_workflows(status='ERROR', limit=1000)", errors.sql, errors.params, False,
        ),
        "list_rare": (
            "app.list_workflows(status='DEAD_LETTER', limit=50), none exist",
            dead.sql, dead.params, False,
        ),
        "count": (
            "count per status (dashboard: seq scan of 1M rows)",
            f"SELECT status, count(*) FROM {w} GROUP BY status", None, False,
        ),
        "takeover": (
            "takeover scan: pending of dead executors (10,000 scattered rows)",
            f"SELECT count(*), max(wf.created_at) FROM {w} wf LEFT JOIN {e} x "
            f"ON x.id = wf.executor_id WHERE wf.status = 'PENDING' "
            f"AND wf.executor_id IS NOT NULL AND x.id IS NULL",
            None, False,
        ),
        "retention": (
            "retention DELETE of the oldest 10% finished (rolled back)",
            f"DELETE FROM {w} WHERE created_at < (SELECT min(created_at) + "
            f"(max(created_at) - min(created_at)) / 10 FROM {w}) AND status <> 'PENDING'",
            None, True,
        ),
    }  # fmt: skip


def time_cold(
    cluster: Cluster, sql_text: str, params: dict[str, Any] | None, rollback: bool, cold_os: bool
) -> float:
    """Restart (empty shared buffers), warm the catalogs, optionally empty the OS cache,
    then time one execution in ms."""
    cluster.restart()
    with psycopg.connect(cluster.url) as conn:
        conn.execute(f"EXPLAIN {sql_text}", params)  # catalogs and plan, no heap reads
        conn.rollback()
        if cold_os:
            drop_os_cache()
        start = time.perf_counter()
        cur = conn.execute(sql_text, params)
        if not rollback:
            cur.fetchall()
        took = time.perf_counter() - start
        conn.rollback()
    return took * 1000.0


@benchmark("settings", default=False)
def io_settings(ctx: Context) -> list[Measurement]:
    """PG 18 io_method sync / worker:3 / worker:6 on read-heavy paths over 1M workflow rows."""
    if ctx.data_dir is None:
        ctx.log("skipped: needs the embedded server (it restarts a second data directory)")
        return []
    path = Path(f"{ctx.data_dir}-settings")
    repeats = 1 if ctx.quick else min(ctx.repeats, 5)
    cold_os = ctx.cold and drop_os_cache()
    if ctx.cold and not cold_os:
        ctx.log("--cold ignored: cannot write /proc/sys/vm/drop_caches (not root?)")
    cluster = Cluster(path)
    out: list[Measurement] = []
    try:
        populate(cluster.url, ctx.log)
        paths = cold_paths(cluster.url)
        samples: dict[tuple[str, str], list[float]] = {}
        commit: dict[str, list[float]] = {}
        for config, settings in CONFIGS:
            cluster.configure(settings)
            method, workers = cluster.show("io_method"), cluster.show("io_workers")
            ctx.log(f"{config}: io_method={method}, io_workers={workers}")
            for _ in range(repeats):
                for key, (_, sql_text, params, rollback) in paths.items():
                    samples.setdefault((key, config), []).append(
                        time_cold(cluster, sql_text, params, rollback, cold_os)
                    )
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                scratch = f'"{SCHEMA}".scratch'
                conn.execute(f"CREATE TABLE IF NOT EXISTS {scratch} (id bigserial, payload jsonb)")
                conn.execute(f"TRUNCATE {scratch}")
                statement = f"INSERT INTO {scratch} (payload) VALUES ('null')"

                def insert(c: psycopg.Connection[Any] = conn, st: str = statement) -> None:
                    c.execute(st, prepare=True)

                per_call(insert, 50)
                commit[config] = [
                    statistics.median(per_call(insert, 300)) * 1000 for _ in range(repeats)
                ]
            summary = ", ".join(
                f"{key} {statistics.median(samples[(key, config)]):.0f} ms" for key in paths
            )
            ctx.log(f"{config}: {summary}, commit {statistics.median(commit[config]):.3f} ms")
        cache = "OS page cache dropped" if cold_os else "OS page cache warm"
        for key, (label, _, _, _) in paths.items():
            for config, _ in CONFIGS:
                out.append(
                    Measurement(
                        f"settings.{key}.{config}", f"cold {label}, io {config}", "ms",
                        samples[(key, config)], ratio_to=f"settings.{key}.sync",
                        note=f"restarted server, {cache}" if config == "sync" else "x sync",
                    )
                )  # fmt: skip
        for config, _ in CONFIGS:
            out.append(
                Measurement(
                    f"settings.commit.{config}", f"1-row INSERT+COMMIT, io {config}", "ms",
                    commit[config], ratio_to="settings.commit.sync",
                    note="median of 300, warm" if config == "sync" else "x sync",
                )
            )  # fmt: skip
    finally:
        cluster.close()
    return out
