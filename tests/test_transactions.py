"""Transaction steps: the user's SQL commits with its checkpoint, exactly once.

Every test counts the rows the transaction wrote in its own table: a body that ran twice
and committed twice would show as two rows, whatever the recorded result says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg.sql
import pytest

import durably
from durably.store import faults
from procs.harness import Workers
from support import wait_until

pytestmark = pytest.mark.timeout(90)


def ident(schema: str) -> psycopg.sql.Identifier:
    return psycopg.sql.Identifier(schema)


@pytest.fixture
def table(db: psycopg.Connection[Any], schema: str) -> Callable[[], list[tuple[Any, ...]]]:
    """The test's own table ``<schema>.tx_rows``; returns a reader of its rows."""
    db.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema)))
    db.execute(
        psycopg.sql.SQL(
            "CREATE TABLE {}.tx_rows (workflow_id text, pid int, note text, "
            "created_at timestamptz DEFAULT clock_timestamp())"
        ).format(ident(schema))
    )

    def rows() -> list[tuple[Any, ...]]:
        query = psycopg.sql.SQL("SELECT workflow_id, pid, note FROM {}.tx_rows ORDER BY created_at")
        return db.execute(query.format(ident(schema))).fetchall()

    return rows


def insert_sql(schema: str) -> psycopg.sql.Composed:
    return psycopg.sql.SQL(
        "INSERT INTO {}.tx_rows (workflow_id, pid, note) VALUES (%s, %s, %s)"
    ).format(ident(schema))


def steps_of(app: durably.App, workflow_id: str) -> list[tuple[int, str, str]]:
    # Functions declared in a test are named by qualified name: ``test_x.<locals>.f``.
    return [(s.step, s.name.rpartition(".")[2], s.kind) for s in app.list_steps(workflow_id)]


# ---------------------------------------------------------------- in one process


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_transaction_commits_with_its_checkpoint_and_replays(
    make_app: Callable[..., durably.App],
    schema: str,
    table: Callable[[], list[Any]],
    pipeline: bool,
) -> None:
    app = make_app()
    bodies: list[int] = []

    @app.transaction(pipeline=pipeline)
    def record(conn: psycopg.Connection[Any], order: str) -> dict[str, str]:
        bodies.append(1)
        conn.execute(insert_sql(schema), (durably.workflow_id(), os.getpid(), order))
        # Reading a result works in pipeline mode too (it costs a round trip there).
        row = conn.execute("SELECT current_setting('transaction_isolation')").fetchone()
        assert row == ("serializable",)
        return {"order": order}

    @app.workflow()
    def checkout(order: str) -> dict[str, str]:
        return record(order)

    with app:
        assert checkout.options(id="c-1")("o-1") == {"order": "o-1"}
        # The same ID again returns the recorded result: the body does not run again.
        assert checkout.options(id="c-1")("o-1") == {"order": "o-1"}
    assert bodies == [1]
    assert table() == [("c-1", os.getpid(), "o-1")]
    assert steps_of(app, "c-1") == [(1, "record", "transaction")]


def test_outside_a_workflow_it_runs_once_in_its_own_transaction(
    make_app: Callable[..., durably.App], schema: str, table: Callable[[], list[Any]]
) -> None:
    app = make_app()

    @app.transaction
    def add(conn: psycopg.Connection[Any], note: str, fail: bool = False) -> int:
        conn.execute(insert_sql(schema), ("none", 0, note))
        if fail:
            raise ValueError("changed my mind")
        return 1

    assert add("kept") == 1
    with pytest.raises(ValueError, match="changed my mind"):
        add("dropped", fail=True)
    assert [row[2] for row in table()] == ["kept"]


def test_an_error_rolls_back_and_is_recorded_like_a_step_error_with_its_retries(
    make_app: Callable[..., durably.App], schema: str, table: Callable[[], list[Any]]
) -> None:
    app = make_app()
    attempts: list[int] = []

    @app.transaction(retries=2, interval=0.01)
    def flaky(conn: psycopg.Connection[Any]) -> str:
        attempts.append(1)
        conn.execute(insert_sql(schema), (durably.workflow_id(), len(attempts), "try"))
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)} failed")
        return "third time"

    @app.transaction(name="broken", retries=1, interval=0.01)
    def broken(conn: psycopg.Connection[Any]) -> None:
        conn.execute(insert_sql(schema), (durably.workflow_id(), 0, "broken"))
        raise RuntimeError("always")

    @app.workflow()
    def wf() -> str:
        first = flaky()
        try:
            broken()
        except durably.StepRetriesExceeded as exc:
            return f"{first}; {exc}"
        return first

    with app:
        result = wf.options(id="e-1")()
    assert result.startswith("third time; step 'broken' failed after 2 attempts")
    # Only the attempt that succeeded left its row: the failed ones were rolled back.
    assert table() == [("e-1", 3, "try")]
    [_, failed] = app.list_steps("e-1")
    assert failed.kind == "transaction" and failed.error is not None


@pytest.mark.parametrize("errcode", ["serialization_failure", "deadlock_detected"])
def test_a_serialization_failure_runs_the_body_again_in_a_fresh_transaction(
    make_app: Callable[..., durably.App],
    schema: str,
    table: Callable[[], list[Any]],
    errcode: str,
) -> None:
    app = make_app()
    runs: list[int] = []
    conflict = f"DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = '{errcode}'; END $$"

    @app.transaction(isolation="serializable")
    def contended(conn: psycopg.Connection[Any]) -> int:
        runs.append(1)
        conn.execute(insert_sql(schema), (durably.workflow_id(), len(runs), "contended"))
        if len(runs) <= 2:
            conn.execute(conflict)  # the server's own 40001, twice
        return len(runs)

    @app.workflow()
    def wf() -> int:
        return contended()

    with app:
        assert wf.options(id=f"s-{errcode}")() == 3
    assert table() == [(f"s-{errcode}", 3, "contended")]
    assert steps_of(app, f"s-{errcode}") == [(1, "contended", "transaction")]


def test_real_conflicts_between_concurrent_serializable_transactions_all_commit_once(
    make_app: Callable[..., durably.App], schema: str, db: psycopg.Connection[Any], table: Any
) -> None:
    # Read-modify-write of one counter by many workflows at once: without the retries of
    # serialization failures, updates would be lost or workflows would fail.
    db.execute(psycopg.sql.SQL("CREATE TABLE {}.counter (n int)").format(ident(schema)))
    db.execute(psycopg.sql.SQL("INSERT INTO {}.counter VALUES (0)").format(ident(schema)))
    app = make_app()
    read = psycopg.sql.SQL("SELECT n FROM {}.counter").format(ident(schema))
    write = psycopg.sql.SQL("UPDATE {}.counter SET n = %s").format(ident(schema))

    @app.transaction(isolation="serializable", conflict_retries=100)
    def bump(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(read).fetchone()
        assert row is not None
        conn.execute(write, (row[0] + 1,))
        return int(row[0]) + 1

    @app.workflow()
    def wf() -> int:
        return bump()

    with app:
        handles = [wf.start() for _ in range(20)]
        results = sorted(h.result(timeout=60) for h in handles)
    assert results == list(range(1, 21))
    assert db.execute(read).fetchone() == (20,)


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_lost_commit_reply_is_settled_from_the_checkpoint_not_run_again(
    make_app: Callable[..., durably.App],
    schema: str,
    table: Callable[[], list[Any]],
    pipeline: bool,
) -> None:
    app = make_app()
    bodies: list[int] = []
    dropped = threading.Event()

    def drop_once(names: Any) -> bool:
        if "record_transaction_operation" in names and not dropped.is_set():
            dropped.set()
            return True
        return False

    @app.transaction(pipeline=pipeline)
    def pay(conn: psycopg.Connection[Any]) -> str:
        bodies.append(1)
        conn.execute(insert_sql(schema), (durably.workflow_id(), os.getpid(), "paid"))
        return "receipt"

    @app.workflow()
    def wf() -> str:
        return pay()

    with app:
        faults.install(drop_once)
        try:
            assert wf.options(id="l-1")() == "receipt"
        finally:
            faults.install(None)
    assert dropped.is_set()
    assert bodies == [1]  # committed, reply lost: found in its checkpoint, not re-run
    assert len(table()) == 1


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_taken_over_owner_commits_nothing(
    make_app: Callable[..., durably.App],
    schema: str,
    db: psycopg.Connection[Any],
    table: Callable[[], list[Any]],
    pipeline: bool,
) -> None:
    # The workflow changes owner (its epoch moves on) while the body's transaction is
    # open: the checkpoint finds no row of its epoch, and the body's insert is rolled back.
    app = make_app()
    inside, go_on = threading.Event(), threading.Event()

    @app.transaction(pipeline=pipeline)
    def slow(conn: psycopg.Connection[Any]) -> str:
        conn.execute(insert_sql(schema), (durably.workflow_id(), os.getpid(), "fenced"))
        inside.set()
        assert go_on.wait(30)
        return "never recorded"

    @app.workflow()
    def wf() -> str:
        return slow()

    with app:
        handle = wf.options(id="f-1").start()
        assert inside.wait(30)
        db.execute(
            psycopg.sql.SQL(
                "UPDATE {}.workflows SET epoch = epoch + 1, executor_id = 'elsewhere' WHERE id = %s"
            ).format(ident(schema)),
            ("f-1",),
        )
        go_on.set()
        local = app.engine.local_future("f-1")
        assert local is not None
        with pytest.raises(durably.LostOwnership):
            local.result(timeout=30)
    assert table() == []
    assert handle.id == "f-1"
    assert app.list_steps("f-1") == []


def test_in_pipeline_mode_an_error_of_the_functions_sql_rolls_it_back(
    make_app: Callable[..., durably.App], schema: str, table: Callable[[], list[Any]]
) -> None:
    app = make_app()

    @app.transaction(pipeline=True)
    def duplicate(conn: psycopg.Connection[Any]) -> str:
        conn.execute(insert_sql(schema), (durably.workflow_id(), 1, "before the error"))
        conn.execute("SELECT 1/0")  # its error surfaces when the pipeline syncs
        return "not reached as a result"

    @app.workflow()
    def wf() -> str:
        return duplicate()

    with app, pytest.raises(psycopg.errors.DivisionByZero):
        wf.options(id="p-1")()
    assert table() == []
    [step] = app.list_steps("p-1")
    assert step.kind == "transaction" and isinstance(step.error, psycopg.errors.DivisionByZero)


@pytest.mark.parametrize(
    ("misuse", "expected"),
    [
        ("commit", "ended its transaction itself"),
        ("close", "closed its connection"),
        ("swallow", "aborted transaction"),
    ],
)
def test_a_transaction_that_ends_its_own_transaction_is_refused(
    make_app: Callable[..., durably.App],
    schema: str,
    table: Callable[[], list[Any]],
    misuse: str,
    expected: str,
) -> None:
    app = make_app()

    @app.transaction(retries=3, interval=0.01)
    def naughty(conn: psycopg.Connection[Any]) -> None:
        conn.execute(insert_sql(schema), (durably.workflow_id(), 0, misuse))
        if misuse == "commit":
            conn.execute("COMMIT")
        elif misuse == "close":
            conn.close()
        else:
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")

    @app.workflow()
    def wf() -> None:
        naughty()

    with app:
        with pytest.raises(durably.TransactionMisuse, match=expected):
            wf.options(id=f"m-{misuse}")()
        # Misuse is not retried (it would do the same again), and is recorded.
        [step] = app.list_steps(f"m-{misuse}")
        assert step.kind == "transaction" and step.error is not None
    # A raw COMMIT did commit its row (outside the guarantee, as the error says); the
    # others committed nothing.
    assert len(table()) == (1 if misuse == "commit" else 0)


@pytest.mark.parametrize("pipeline", [False, True])
def test_an_async_transaction_gets_an_async_connection(
    make_app: Callable[..., durably.App],
    schema: str,
    table: Callable[[], list[Any]],
    pipeline: bool,
) -> None:
    app = make_app()

    @app.transaction(isolation="repeatable read", pipeline=pipeline)
    async def record(conn: psycopg.AsyncConnection[Any], note: str) -> str:
        assert isinstance(conn, psycopg.AsyncConnection)
        await conn.execute(insert_sql(schema), (durably.workflow_id(), os.getpid(), note))
        return note.upper()

    @app.transaction()
    def blocking(conn: psycopg.Connection[Any], note: str) -> str:
        assert isinstance(conn, psycopg.Connection)
        conn.execute(insert_sql(schema), (durably.workflow_id(), os.getpid(), note))
        return note

    @app.workflow()
    async def wf() -> list[str]:
        return [await record("a"), await asyncio.to_thread(lambda: "x"), blocking("b")]  # type: ignore[list-item]

    with app:
        assert asyncio.run(wf.options(id="a-1")()) == ["A", "x", "b"]
        assert asyncio.run(wf.options(id="a-1")()) == ["A", "x", "b"]
    assert [row[2] for row in table()] == ["a", "b"]


def test_bad_declarations_are_refused() -> None:
    app = durably.App("postgresql://nobody@localhost/none")
    with pytest.raises(durably.ConfigurationError, match="isolation must be one of"):
        app.transaction(isolation="snapshot")(lambda conn: None)  # type: ignore[arg-type]
    with pytest.raises(durably.ConfigurationError, match="first parameter receives"):

        @app.transaction
        def nothing() -> None: ...

    with pytest.raises(TypeError, match="unexpected keyword argument 'isolaton'"):
        app.transaction(isolaton="serializable")  # type: ignore[call-overload]
    with pytest.raises(durably.ConfigurationError, match="conflict_retries"):
        app.transaction(conflict_retries=-1)(lambda conn: None)


# ---------------------------------------------------------------- another database


@pytest.fixture
def other_db(pg_url: str) -> Iterator[str]:
    """A second database on the test server; its URL."""
    name = f"other_{os.getpid()}_{threading.get_ident() % 10000}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {}").format(ident(name)))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(ident(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    info["dbname"] = name
    yield psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(name)))


def test_a_transaction_on_another_database_keeps_its_checkpoint_there(
    make_app: Callable[..., durably.App], schema: str, other_db: str
) -> None:
    with psycopg.connect(other_db, autocommit=True) as other:
        other.execute("CREATE TABLE orders (workflow_id text, note text)")
    app = make_app(app_db=other_db)
    bodies: list[int] = []
    dropped = threading.Event()

    @app.transaction()
    def place(conn: psycopg.Connection[Any], note: str) -> str:
        bodies.append(1)
        conn.execute("INSERT INTO orders VALUES (%s, %s)", (durably.workflow_id(), note))
        return note

    @app.transaction()
    async def place_async(conn: psycopg.AsyncConnection[Any], note: str) -> str:
        await conn.execute("INSERT INTO orders VALUES (%s, %s)", (durably.workflow_id(), note))
        return note

    @app.workflow()
    def wf(note: str) -> str:
        return place(note)

    @app.workflow()
    async def awf(note: str) -> str:
        return await place_async(note)

    def drop_once(names: Any) -> bool:
        if "record_transaction" in names and not dropped.is_set():
            dropped.set()
            return True
        return False

    with app:
        assert wf.options(id="o-1")("first") == "first"
        faults.install(drop_once)
        try:
            assert wf.options(id="o-2")("second") == "second"  # its reply is lost
        finally:
            faults.install(None)
        assert asyncio.run(awf.options(id="o-3")("third")) == "third"
        assert wf.options(id="o-1")("first") == "first"
    assert dropped.is_set() and len(bodies) == 2
    with psycopg.connect(other_db) as other:
        orders = other.execute("SELECT workflow_id, note FROM orders ORDER BY 1").fetchall()
        outputs = other.execute(
            psycopg.sql.SQL(
                "SELECT workflow_id, step, output FROM {}.transaction_outputs ORDER BY 1"
            ).format(ident(schema))
        ).fetchall()
    assert orders == [("o-1", "first"), ("o-2", "second"), ("o-3", "third")]
    assert outputs == [("o-1", 1, "first"), ("o-2", 1, "second"), ("o-3", 1, "third")]
    # The app's own database records each as a transaction step too.
    assert steps_of(app, "o-2") == [(1, "place", "transaction")]


def test_a_transaction_on_another_database_committed_before_a_crash_is_not_run_again(
    make_app: Callable[..., durably.App], schema: str, other_db: str
) -> None:
    # The transaction committed in the other database, then the process died before the
    # app's database recorded it: the next run finds its checkpoint there and rolls back
    # its own attempt.
    with psycopg.connect(other_db, autocommit=True) as other:
        other.execute("CREATE TABLE orders (workflow_id text, note text)")
    app = make_app(app_db=other_db)
    bodies: list[str] = []

    @app.transaction()
    def place(conn: psycopg.Connection[Any], note: str) -> str:
        bodies.append(note)
        conn.execute("INSERT INTO orders VALUES (%s, %s)", (durably.workflow_id(), note))
        return note

    @app.workflow()
    def wf(note: str) -> str:
        return place(note)

    with app:
        app.engine.other_databases.sync(other_db)  # creates the checkpoint table
    # What the crashed run left: its order and its checkpoint, committed together.
    with psycopg.connect(other_db, autocommit=True) as other, other.transaction():
        other.execute("INSERT INTO orders VALUES ('x-1', 'before the crash')")
        other.execute(
            psycopg.sql.SQL(
                "INSERT INTO {}.transaction_outputs (workflow_id, step, output) "
                "VALUES ('x-1', 1, '\"before the crash\"')"
            ).format(ident(schema))
        )
    app2 = make_app(app_db=other_db)
    app2_place = app2.transaction(name="place")(place.spec.fn)

    @app2.workflow(name="wf")
    def wf2(note: str) -> str:
        return app2_place(note)

    with app2:
        assert wf2.options(id="x-1")("after the crash") == "before the crash"
    assert bodies == ["after the crash"]  # it ran, found the checkpoint, rolled back
    with psycopg.connect(other_db) as other:
        assert other.execute("SELECT note FROM orders").fetchall() == [("before the crash",)]


# ---------------------------------------------------------------- crashes (processes)


@pytest.fixture
def tx_table(db: psycopg.Connection[Any], schema: str) -> Callable[[], list[tuple[Any, ...]]]:
    """The table of the worker processes' transaction step (tests/procs/workflows.py)."""
    db.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema)))
    db.execute(
        psycopg.sql.SQL("CREATE TABLE {}.tx_rows (workflow_id text, pid int)").format(ident(schema))
    )
    return lambda: db.execute(
        psycopg.sql.SQL("SELECT workflow_id, pid FROM {}.tx_rows").format(ident(schema))
    ).fetchall()


def test_sigkill_inside_the_open_transaction_commits_nothing_and_recovery_commits_once(
    workers: Workers, tx_table: Callable[[], list[Any]]
) -> None:
    a = workers.spawn("exec-A", hold={"tx_insert"})
    a.send(op="start", wf="txflow", id="k-1", args=[5])
    wait_until(lambda: ("tx_insert", a.pid) in workers.lines(), what="A inside the transaction")
    a.kill()
    assert tx_table() == []  # the open transaction died with its connection
    workers.open_gate("tx_insert")
    b = workers.spawn("exec-A")  # the same executor ID recovers its workflow at once
    b.send(op="wait", id="k-1", timeout=30)
    assert b.expect("result", id="k-1", timeout=30)["value"] == [f"5@{b.pid}", 10]
    assert tx_table() == [("k-1", b.pid)]


def test_sigkill_after_the_commit_before_the_next_step_does_not_run_it_again(
    workers: Workers, tx_table: Callable[[], list[Any]]
) -> None:
    a = workers.spawn("exec-A", hold={"s1"})
    a.send(op="start", wf="txflow", id="k-2", args=[6])
    wait_until(lambda: ("s1", a.pid) in workers.lines(), what="A past the transaction")
    a.kill()
    workers.open_gate("s1")
    b = workers.spawn("exec-A")
    b.send(op="wait", id="k-2", timeout=30)
    assert b.expect("result", id="k-2", timeout=30)["value"] == [f"6@{a.pid}", 12]
    assert tx_table() == [("k-2", a.pid)]
    assert workers.counts()["tx_insert"] == 1


def test_a_paused_owner_taken_over_cannot_commit_its_transaction(
    workers: Workers, tx_table: Callable[[], list[Any]]
) -> None:
    a = workers.spawn("exec-A", lease=1.0, hold={"tx_insert"})
    b = workers.spawn("exec-B", lease=1.0)
    a.send(op="start", wf="txflow", id="k-3", args=[7])
    wait_until(lambda: ("tx_insert", a.pid) in workers.lines(), what="A inside the transaction")
    os.kill(a.pid, signal.SIGSTOP)  # A stops heartbeating with its transaction open
    try:
        b.send(op="wait", id="k-3", timeout=45)
        assert b.expect("result", id="k-3", timeout=45)["value"] == [f"7@{b.pid}", 14]
        workers.open_gate("tx_insert")  # A's body may now return, and A tries to commit
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.expect("local", id="k-3")["type"] == "LostOwnership"
    wait_until(lambda: ("LOST", a.pid) in workers.lines(), what="A's workflow seeing it")
    assert tx_table() == [("k-3", b.pid)]  # A's insert was rolled back


def test_a_transaction_step_can_enqueue_in_its_own_transaction(
    make_app: Callable[..., durably.App], schema: str, table: Callable[[], list[Any]]
) -> None:
    # The outbox from inside a workflow: the row and the follow-up workflow commit
    # together, once, or (when the function raises) not at all.
    app = make_app()
    app.queue("follow-ups")
    ran: list[str] = []

    @app.workflow()
    def follow_up(note: str) -> str:
        ran.append(note)
        return note

    @app.transaction()
    def place(conn: psycopg.Connection[Any], note: str, fail: bool) -> str:
        conn.execute(insert_sql(schema), (durably.workflow_id(), 0, note))
        app.enqueue_in(conn, "follow-ups", follow_up, note, id=f"follow-{note}")
        if fail:
            raise ValueError("rolled back, follow-up and all")
        return note

    @app.workflow()
    def order(note: str, fail: bool) -> str:
        return place(note, fail)

    with app:
        assert order.options(id="o-ok")("kept", False) == "kept"
        with pytest.raises(ValueError):
            order.options(id="o-bad")("dropped", True)
        assert app.handle("follow-kept").result(timeout=30) == "kept"
        assert app.list_workflows(ids=["follow-dropped"]) == []
    assert [row[2] for row in table()] == ["kept"]
    assert ran == ["kept"]


def test_a_function_waiting_for_a_connection_past_its_lease_does_not_start(
    make_app: Callable[..., durably.App],
    schema: str,
    db: psycopg.Connection[Any],
    table: Callable[[], list[Any]],
) -> None:
    # The lease gate is passed, then every pooled connection is busy; meanwhile the lease
    # lapses and the workflow is taken over. Once a connection is free, the function must
    # not start: the run goes back through its gate and finds the workflow is not its own.
    app = make_app()
    bodies: list[int] = []

    @app.transaction()
    def late(conn: psycopg.Connection[Any]) -> str:
        bodies.append(1)
        conn.execute(insert_sql(schema), (durably.workflow_id(), os.getpid(), "late"))
        return "ran"

    @app.workflow()
    def wf() -> str:
        return late()

    with app:
        pool = app.engine.db.pool
        held = [pool.getconn() for _ in range(pool.max_size)]
        try:
            wf.options(id="g-1").start()
            local = app.engine.local_future("g-1")
            assert local is not None
            wait_until(lambda: pool.get_stats().get("requests_waiting", 0) > 0, what="waiting")
            lease = app.engine.lease
            lease._renewed_at = time.monotonic() - 10 * lease.seconds  # it lapsed ...
            lease.renewed(time.monotonic())  # ... and was renewed after the gap
            db.execute(
                psycopg.sql.SQL(
                    "UPDATE {}.workflows SET epoch = epoch + 1, executor_id = 'other' "
                    "WHERE id = 'g-1'"
                ).format(ident(schema))
            )
        finally:
            for conn in held:
                pool.putconn(conn)
        with pytest.raises(durably.LostOwnership):
            local.result(timeout=30)
    assert bodies == []
    assert table() == []
