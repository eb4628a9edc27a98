"""Finished history and long backlogs: claims and listings read what they return.

Queue claims must not read the finished workflows of their queue (nor the rate-limit
count all its past starts); a launch recovering its own backlog takes it in batches, each
after the last, every workflow once, never more running than the recovery capacity, and
a row a batch skipped while it was locked is still taken at launch; a listing by name,
queue or several statuses reads its page from an index, not every newer row.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

import durably
from durably.codec import dumps_args
from durably.runtime import recovery
from durably.store.queue_statements import QueueStatements
from durably.store.statements import Statements
from support import wait_until

HISTORY = 20_000


def rows_read(plan: dict[str, Any]) -> int:
    """Rows (and index entries) the scans of ``workflows`` in an EXPLAIN ANALYZE read."""
    total = 0
    relation = plan.get("Relation Name") == "workflows"
    if relation or str(plan.get("Index Name", "")).startswith("workflows"):
        loops = plan.get("Actual Loops", 1)
        total += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    for child in plan.get("Plans", []):
        total += rows_read(child)
    return int(total)


def explain(conn: psycopg.Connection[Any], statement: Any) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, FORMAT JSON) of a statement, in a transaction rolled back."""
    with conn.transaction(force_rollback=True):
        row = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement.sql, statement.params
        ).fetchone()
    assert row is not None
    return row[0][0]["Plan"]  # type: ignore[no-any-return]


def fill_history(conn: psycopg.Connection[Any], schema: str, queue: str) -> None:
    """HISTORY finished workflows of ``queue``, started over the last two days."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.workflows (id, name, status, inputs, max_recovery_attempts,"
            " created_at, completed_at, queue_name, enqueued_at, started_at, executor_id)"
            " SELECT 'old-' || i, 'old', 'SUCCESS', '[]', 10, t, t, %s, t, t, 'gone'"
            " FROM generate_series(1, %s) i,"
            " LATERAL (SELECT now() - make_interval(secs => i * 8.0)) AS x(t)"
        ).format(sql.Identifier(schema)),
        (queue, HISTORY),
    )
    conn.execute(sql.SQL("ANALYZE {}.workflows").format(sql.Identifier(schema)))


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"rate_limit": 1_000_000, "rate_period": 60.0},
        {"concurrency": 50, "worker_concurrency": 50},
        {"partition_concurrency": 1},
    ],
    ids=["no-limit", "rate-limit", "concurrency", "partitioned"],
)
def test_a_claim_does_not_read_the_queues_finished_history(
    make_app: Callable[..., durably.App], schema: str, db: Any, limits: dict[str, Any]
) -> None:
    app = make_app()
    _ = app.engine  # the schema
    with psycopg.connect(app.engine.db.url, autocommit=True) as conn:
        fill_history(conn, schema, "q")
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.queues (name, concurrency, worker_concurrency, rate_limit,"
                " rate_period, partition_concurrency) VALUES ('q', %s, %s, %s, %s, %s)"
            ).format(sql.Identifier(schema)),
            tuple(
                limits.get(k)
                for k in (
                    "concurrency",
                    "worker_concurrency",
                    "rate_limit",
                    "rate_period",
                    "partition_concurrency",
                )
            ),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.workflows (id, name, status, inputs, max_recovery_attempts,"
                " queue_name, enqueued_at, partition_key)"
                " SELECT 'new-' || i, 'new', 'ENQUEUED', '[]', 10, 'q', clock_timestamp(),"
                " 'p' || (i % 20) FROM generate_series(1, 200) i"
            ).format(sql.Identifier(schema))
        )
        claim = QueueStatements(schema, "ch").claim_queued(
            queue="q",
            executor_id="me",
            names=["new"],
            want=20,
            partitioned="partition_concurrency" in limits,
        )
        plan = explain(conn, claim)
    assert plan["Actual Rows"] == 20
    # The 200 waiting, the 20 claimed and their neighbours: not the 20,000 finished.
    assert rows_read(plan) < 2_000, rows_read(plan)


def orphans(app: durably.App, db: Any, name: str, executor_id: str, n: int) -> list[str]:
    """``n`` workflows left PENDING by ``executor_id`` (as a SIGKILL leaves them), created
    one second apart, oldest first."""
    ids = [f"orphan-{i:04d}-{uuid.uuid4().hex[:4]}" for i in range(n)]
    start = datetime.now(UTC) - timedelta(hours=1)
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO workflows (id, name, status, inputs, executor_id,"
            " max_recovery_attempts, created_at, updated_at)"
            " VALUES (%s, %s, 'PENDING', %s::jsonb, %s, 5, %s, %s)",
            [
                (
                    workflow_id,
                    name,
                    dumps_args(app.engine.codec, (i,), {}),
                    executor_id,
                    start + timedelta(seconds=i),
                    start + timedelta(seconds=i),
                )
                for i, workflow_id in enumerate(ids)
            ],
        )
    return ids


def test_a_batch_of_own_leftovers_starts_after_the_last(
    make_app: Callable[..., durably.App], db: Any, schema: str
) -> None:
    """With the IDs of the previous batch, a claim reads from where it ended: its cost
    does not grow with the part of the backlog already taken."""
    executor_id = f"exec-{uuid.uuid4().hex[:6]}"
    app = make_app(executor_id=executor_id)
    ids = orphans(app, db, "left", executor_id, 3000)
    launched = db.execute("SELECT clock_timestamp()").fetchone()[0]
    # The first 2,000 were claimed by earlier batches of this launch (updated since).
    db.execute(
        "UPDATE workflows SET updated_at = clock_timestamp(), epoch = 2 WHERE id = ANY(%s)",
        (ids[:2000],),
    )
    db.execute("ANALYZE workflows")
    statements = Statements(schema)
    claim = statements.claim_own(executor_id, ["left"], 100, launched, after=ids[1900:2000])
    plan = explain(db, claim)
    assert plan["Actual Rows"] == 100
    assert rows_read(plan) < 1_000, rows_read(plan)
    with db.transaction(force_rollback=True):
        taken = [row[0] for row in db.execute(claim.sql, claim.params).fetchall()]
    assert sorted(taken) == ids[2000:2100]  # oldest first, from the last batch's end


def test_a_backlog_beyond_the_capacity_is_recovered_in_batches_once_each(
    make_app: Callable[..., durably.App], db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "RECOVERY_CAPACITY", 40)
    monkeypatch.setattr(recovery, "RECOVERY_BATCH", 15)
    executor_id = f"exec-{uuid.uuid4().hex[:6]}"
    app = make_app(executor_id=executor_id)
    runs: dict[int, int] = {}
    running = {"now": 0, "most": 0}

    @app.workflow(name="backlog")
    async def backlog(i: int) -> int:
        running["now"] += 1  # on the runtime loop: one thread
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.005)
        runs[i] = runs.get(i, 0) + 1
        running["now"] -= 1
        return i

    ids = orphans(app, db, "backlog", executor_id, 300)
    app.launch()
    for i, workflow_id in enumerate(ids):
        assert app.handle(workflow_id).result(timeout=60) == i
    assert runs == {i: 1 for i in range(300)}
    assert 0 < running["most"] <= 40
    attempts = db.execute("SELECT DISTINCT recovery_attempts FROM workflows").fetchall()
    assert attempts == [(1,)]


def test_a_leftover_locked_during_its_batch_is_still_recovered_at_launch(
    make_app: Callable[..., durably.App], db: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch skips a row somebody holds locked; the launch's last pass from the oldest
    takes it once it is free (not only the next slow sweep)."""
    monkeypatch.setattr(recovery, "RECOVERY_CAPACITY", 10)
    monkeypatch.setattr(recovery, "RECOVERY_BATCH", 10)
    executor_id = f"exec-{uuid.uuid4().hex[:6]}"
    app = make_app(executor_id=executor_id, max_threads=30)
    gate = threading.Event()
    runs: dict[int, int] = {}

    @app.workflow(name="gated")
    def gated(i: int) -> int:
        gate.wait(30)
        runs[i] = runs.get(i, 0) + 1
        return i

    ids = orphans(app, db, "gated", executor_id, 25)
    schema = db.execute("SELECT current_schema()").fetchone()[0]
    with psycopg.connect(pg_url) as holder:
        holder.execute(
            sql.SQL("SELECT 1 FROM {}.workflows WHERE id = %s FOR UPDATE").format(
                sql.Identifier(schema)
            ),
            (ids[0],),
        )
        app.launch()  # claims the first batch, skipping the locked oldest row

        def claimed() -> int:
            return int(db.execute("SELECT count(*) FROM workflows WHERE epoch > 1").fetchone()[0])

        wait_until(lambda: claimed() >= 10, what="the first batch")
        assert db.execute("SELECT epoch FROM workflows WHERE id = %s", (ids[0],)).fetchone()[0] == 1
        holder.rollback()  # free again, while the capacity is full
    gate.set()
    for i, workflow_id in enumerate(ids):
        assert app.handle(workflow_id).result(timeout=60) == i
    assert runs == {i: 1 for i in range(25)}


def test_listings_by_name_queue_or_statuses_read_their_index(
    make_app: Callable[..., durably.App], schema: str, db: Any
) -> None:
    """A name or queue that has not run lately, both, or several statuses: the page comes
    from the filters' index, not from a walk back through every newer workflow (nor every
    row of the name, when the queue has none of them); and the rows are those of the same
    filters applied to the whole listing."""
    from durably.info import list_query

    app = make_app()
    _ = app.engine
    # 'quiet' ran on queue 'q' only in the oldest 30%; newer rows are all of others.
    db.execute(
        "INSERT INTO workflows (id, name, status, inputs, max_recovery_attempts, created_at,"
        " queue_name)"
        " SELECT 'h-' || i, CASE WHEN i <= 6000 THEN 'quiet' ELSE 'busy' END,"
        "  CASE WHEN i % 50 = 0 THEN 'ERROR' WHEN i % 50 = 1 THEN 'CANCELLED'"
        "       ELSE 'SUCCESS' END, '[]', 10, now() - make_interval(secs => 20000 - i),"
        "  CASE WHEN i <= 6000 THEN 'q' ELSE 'other' END"
        " FROM generate_series(1, 20000) i"
    )
    db.execute("ANALYZE workflows")
    statements = Statements(schema)
    everything = app.list_workflows(descending=True)
    cases: list[tuple[dict[str, Any], Callable[[Any], bool]]] = [
        ({"name": "quiet"}, lambda w: w.name == "quiet"),
        ({"queue": "q"}, lambda w: w.name == "quiet"),
        ({"status": ["ERROR", "CANCELLED"]}, lambda w: w.status in ("ERROR", "CANCELLED")),
        ({"name": "quiet", "queue": "q"}, lambda w: w.name == "quiet"),
        ({"name": "quiet", "queue": "other"}, lambda w: False),  # no row has both
    ]
    for filters, keep in cases:
        st = list_query(statements, descending=True, limit=20, **filters)
        assert rows_read(explain(db, st)) < 200, filters
        expected = [w.id for w in everything if keep(w)]
        assert [w.id for w in app.list_workflows(descending=True, limit=20, **filters)] == (
            expected[:20]
        )
        page = app.list_workflows(descending=True, limit=7, offset=13, **filters)
        assert [w.id for w in page] == expected[13:20], filters
        if page:
            last = page[-1]
            after = app.list_workflows(
                descending=True, limit=5, after=(last.created_at, last.id), **filters
            )
            assert [w.id for w in after] == expected[20:25], filters


def stale_statistics(make_app: Callable[..., durably.App], schema: str) -> None:
    """A migrated schema with finished history, analyzed: no PENDING in its statistics."""
    app = make_app()
    with psycopg.connect(app.engine.db.url, autocommit=True) as conn:
        fill_history(conn, schema, "q")


def test_a_checkpoint_finds_its_workflow_by_key_whatever_the_statistics_say(
    make_app: Callable[..., durably.App], schema: str, db: Any
) -> None:
    """Statistics taken while nothing ran (20,000 finished, none PENDING), then 5,000
    workflows asleep and 100 running: a checkpoint and a finish, alone or batched, read
    their own workflows' rows by primary key, not every unfinished workflow's."""
    stale_statistics(make_app, schema)
    db.execute(
        "INSERT INTO workflows (id, name, status, inputs, max_recovery_attempts, epoch,"
        " executor_id, wake_at)"
        " SELECT CASE WHEN i <= 100 THEN 'run-' ELSE 'asleep-' END || i, 'w', 'PENDING',"
        "  '[]', 10, 1, CASE WHEN i <= 100 THEN 'me' END,"
        "  CASE WHEN i > 100 THEN now() + interval '1 day' END"
        " FROM generate_series(1, 5100) i"
    )
    statements = Statements(schema)
    now = datetime.now(UTC)
    checkpoints = [
        statements.record_operation(
            workflow_id=f"run-{i}", epoch=1, step=1, name="s", kind="step",
            output="null", error=None, started_at=now,
        )
        for i in range(1, 101)
    ]  # fmt: skip
    finishes = [
        statements.finish_workflow(
            workflow_id=f"run-{i}", epoch=1, status="SUCCESS", output="null", error=None
        )
        for i in range(1, 101)
    ]
    for alone, many in ((checkpoints[0], checkpoints), (finishes[0], finishes)):
        assert alone.combine is not None
        batch, _ = alone.combine(many)
        one_plan, batch_plan = explain(db, alone), explain(db, batch)
        # Each workflow's row by its key, counted once per plan node that touches it (a
        # batched finish locks it, then updates it: three), not 5,100 entries.
        assert rows_read(one_plan) <= 3, rows_read(one_plan)
        assert rows_read(batch_plan) <= 3 * len(many), rows_read(batch_plan)
    # Fenced: a wrong epoch, or a finished workflow, writes nothing.
    stale = statements.record_operation(
        workflow_id="run-1", epoch=2, step=1, name="s", kind="step", output="null",
        error=None, started_at=now,
    )  # fmt: skip
    finished = statements.record_operation(
        workflow_id="old-1", epoch=0, step=1, name="s", kind="step", output="null",
        error=None, started_at=now,
    )  # fmt: skip
    assert stale.combine is not None
    batch, _ = stale.combine([stale, finished, checkpoints[1]])
    assert [row[0] for row in db.execute(batch.sql, batch.params).fetchall()] == ["run-2"]


def test_the_sql_api_send_finds_its_receiver_by_key_whatever_the_statistics_say(
    make_app: Callable[..., durably.App], schema: str, db: Any
) -> None:
    """The SQL API's send() under the same statistics: its wake-up finds the receiver by
    primary key, not by walking an index of every unfinished workflow, and still wakes it."""
    stale_statistics(make_app, schema)
    db.execute(
        "INSERT INTO workflows (id, name, status, inputs, max_recovery_attempts, epoch,"
        " wake_at, wait_kind, wait_topic)"
        " SELECT 'asleep-' || i, 'w', 'PENDING', '[]', 10, 1, now() + interval '1 day',"
        "  'recv', 't'"
        " FROM generate_series(1, 5000) i"
    )
    # Scans this transaction made of any index of workflows but its primary key.
    scans = sql.SQL(
        "SELECT coalesce(sum(pg_stat_get_xact_numscans(i.indexrelid)), 0) FROM pg_index i"
        " WHERE i.indrelid = {}::regclass AND NOT i.indisprimary"
    ).format(sql.Literal(sql.Identifier(schema, "workflows").as_string(db)))
    with db.transaction(force_rollback=True):
        # Beyond the five custom plans PL/pgSQL makes before it may settle on a generic one.
        for i in range(1, 11):
            db.execute(
                sql.SQL("SELECT {}(%s, '1'::jsonb, 't')").format(sql.Identifier(schema, "send")),
                (f"asleep-{i}",),
            )
        row = db.execute(scans).fetchone()
        assert row is not None and row[0] == 0, row
        woken = db.execute(
            "SELECT count(*) FROM workflows"
            " WHERE id LIKE 'asleep-%%' AND wake_at < now() + interval '1 hour'"
        ).fetchone()
        assert woken == (10,)
