"""The outbox: ``enqueue_in`` and ``send_in`` write inside the caller's own transaction,
so a workflow or message exists exactly when the caller's own rows do. Sync and async,
on App and Client; bad input is refused with the caller's transaction left usable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import sql

import durably
from durably.execution import waits
from support import wait_until

pytestmark = pytest.mark.timeout(60)

DEADLINE = 20.0


class Rollback(Exception):
    """Raised to leave a ``with conn.transaction()`` block by rolling it back."""


# ------------------------------------------------------------------------ helpers


@pytest.fixture
def orders(db: psycopg.Connection[Any], schema: str) -> str:
    """A table of the caller's own, in the test's schema: its rows are what must commit
    or roll back together with durably's."""
    db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    db.execute("CREATE TABLE orders (id text PRIMARY KEY)")
    return f"{schema}.orders"


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The caller's connection (autocommit, so transactions are explicit blocks)."""
    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


def add_order(conn: psycopg.Connection[Any], table: str, order_id: str) -> None:
    conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.SQL(table)), (order_id,))


def count(db: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def workflows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT id, name, status, queue_name FROM workflows ORDER BY id").fetchall()


def order_ids(db: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in db.execute("SELECT id FROM orders ORDER BY id")]


def still_usable(conn: psycopg.Connection[Any], table: str, order_id: str) -> None:
    """The caller's transaction goes on after a refusal: a row of theirs commits."""
    with conn.transaction():
        add_order(conn, table, order_id)


class CountingCursor(psycopg.Cursor[Any]):
    """Counts the statements sent through cursors of its connection."""

    executed: ClassVar[list[str]] = []

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.executed.append(getattr(query, "name", str(query)[:40]))
        return super().execute(query, *args, **kwargs)


def with_queue(make_app: Callable[..., durably.App], **options: Any) -> durably.App:
    app = make_app(**options)
    app.queue("orders")
    return app


# ------------------------------------------------------------------------ enqueue_in


def test_enqueue_in_rolled_back_leaves_nothing(
    make_app: Callable[..., durably.App],
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return f"shipped {order_id}"

    with pytest.raises(Rollback), conn.transaction():
        add_order(conn, orders, "o-1")
        workflow_id = app.enqueue_in(conn, "orders", ship, "o-1", id="ship-o-1")
        assert workflow_id == "ship-o-1"
        # Not visible to anyone else before the commit.
        assert workflows(db) == []
        raise Rollback
    assert workflows(db) == [] and order_ids(db) == []


def test_enqueue_in_committed_runs_once_with_the_callers_row(
    make_app: Callable[..., durably.App],
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return f"shipped {order_id}"

    with conn.transaction():
        add_order(conn, orders, "o-1")
        workflow_id = app.enqueue_in(conn, "orders", ship, "o-1")
        assert workflows(db) == []
    assert workflows(db) == [(workflow_id, "ship", "ENQUEUED", "orders")]
    assert order_ids(db) == ["o-1"]
    # The app was never launched for it: no executor of it exists yet.
    assert count(db, "SELECT count(*) FROM executors") == 0

    app.launch()
    assert app.handle(workflow_id).result(timeout=DEADLINE) == "shipped o-1"
    assert workflows(db) == [(workflow_id, "ship", "SUCCESS", "orders")]


def test_enqueue_in_with_autocommit_off_joins_the_implicit_transaction(
    make_app: Callable[..., durably.App],
    pg_url: str,
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return order_id

    with psycopg.connect(pg_url) as conn:  # autocommit off: the first statement begins
        app.enqueue_in(conn, "orders", ship, "o-1")
        add_order(conn, orders, "o-1")
        conn.rollback()
        assert workflows(db) == [] and order_ids(db) == []
        # By name on App, and on the Queue object app.queue() returned.
        workflow_id = app.enqueue_in(conn, app.queue("orders"), "ship", "o-2")
        add_order(conn, orders, "o-2")
        conn.commit()
    assert workflows(db) == [(workflow_id, "ship", "ENQUEUED", "orders")]
    assert order_ids(db) == ["o-2"]


def test_the_same_id_twice_in_one_transaction_is_one_workflow(
    make_app: Callable[..., durably.App],
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return order_id

    with conn.transaction():
        first = app.enqueue_in(conn, "orders", ship, "o-1", id="once")
        second = app.enqueue_in(conn, "orders", ship, "o-2", id="once")
    assert first == second == "once"
    assert workflows(db) == [("once", "ship", "ENQUEUED", "orders")]
    # A normal enqueue of the committed ID attaches to it as well.
    assert app.queue("orders").enqueue(ship.options(id="once"), "o-3").id == "once"
    app.launch()
    assert app.handle("once").result(timeout=DEADLINE) == "o-1"


def test_enqueue_in_sends_one_statement_and_takes_the_options(
    make_app: Callable[..., durably.App],
    pg_url: str,
    db: psycopg.Connection[Any],
) -> None:
    app = make_app()
    app.queue("prio", priority=True)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return order_id

    counting = psycopg.connect(pg_url, autocommit=True, cursor_factory=CountingCursor)
    with counting as conn, conn.transaction():
        CountingCursor.executed.clear()
        workflow_id = app.enqueue_in(
            conn, "prio", ship, "o-1", priority=7, partition_key="p", delay=3600, timeout=60
        )
        assert CountingCursor.executed == ["enqueue"]
    row = db.execute(
        "SELECT status, priority, partition_key, timeout_seconds, available_at > now() "
        "FROM workflows WHERE id = %s",
        (workflow_id,),
    ).fetchone()
    assert row == ("DELAYED", 7, "p", 60.0, True)


def test_a_held_dedup_key_raises_and_the_transaction_goes_on(
    make_app: Callable[..., durably.App],
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return order_id

    with conn.transaction():
        held = app.enqueue_in(conn, "orders", ship, "o-1", dedup_key="k")
        with pytest.raises(durably.DuplicateWorkflow) as raised:
            app.enqueue_in(conn, "orders", ship, "o-2", dedup_key="k")
        assert raised.value.holder == held
        # An ID taken by another workflow function: refused, the transaction unharmed.
        with pytest.raises(durably.WorkflowConflict):
            app.enqueue_in(conn, "orders", "other", id=held)
        add_order(conn, orders, "o-1")
    assert workflows(db) == [(held, "ship", "ENQUEUED", "orders")]
    assert order_ids(db) == ["o-1"]


# ------------------------------------------------------------------------ send_in


@pytest.mark.parametrize("park_after", [10.0, 0.0], ids=["blocked", "parked"])
def test_send_in_delivers_once_at_commit_and_never_on_rollback(
    make_app: Callable[..., durably.App],
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
    park_after: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every fallback poll is slower than the deadline below: the wake-up within it comes
    # from the notification the commit delivered.
    monkeypatch.setattr(waits, "POLL_INTERVAL", 60.0)
    app = make_app(park_after=park_after, poll_interval=60.0, lease=240.0)

    @app.workflow
    def approval() -> list[Any]:
        first = durably.recv("decision", timeout=30)
        return [first, durably.recv("decision", timeout=0)]

    app.launch()
    handle = approval.options(id="a-1").start()
    # Blocked: waiting in place, on this executor. Parked: released, its row says recv.
    state = ("PENDING", park_after == 0, "recv" if park_after == 0 else None)
    wait_until(
        lambda: (
            db.execute(
                "SELECT status, executor_id IS NULL, wait_kind FROM workflows WHERE id = 'a-1'"
            ).fetchone()
            == state
        ),
        DEADLINE,
        "the workflow to wait in recv",
    )
    with pytest.raises(Rollback), conn.transaction():
        add_order(conn, orders, "o-1")
        app.send_in(conn, "a-1", {"ok": False}, topic="decision")
        raise Rollback
    assert count(db, "SELECT count(*) FROM messages") == 0

    with conn.transaction():
        add_order(conn, orders, "o-2")
        app.send_in(conn, "a-1", {"ok": True}, topic="decision", idempotency_key="k")
        app.send_in(conn, "a-1", {"ok": "again"}, topic="decision", idempotency_key="k")
        assert count(db, "SELECT count(*) FROM messages") == 0
    assert handle.result(timeout=DEADLINE) == [{"ok": True}, None]
    assert count(db, "SELECT count(*) FROM messages") == 1
    assert order_ids(db) == ["o-2"]


def test_send_in_reaches_a_workflow_enqueued_in_the_same_transaction(
    make_app: Callable[..., durably.App],
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
) -> None:
    app = with_queue(make_app)

    @app.workflow
    def inbox() -> Any:
        return durably.recv(timeout=30)

    with conn.transaction():
        workflow_id = app.enqueue_in(conn, "orders", inbox)
        app.send_in(conn, workflow_id, "hello")
    app.launch()
    assert app.handle(workflow_id).result(timeout=DEADLINE) == "hello"


# ------------------------------------------------------------------------ async


def test_async_twins_commit_and_roll_back_with_the_caller(
    make_app: Callable[..., durably.App],
    pg_url: str,
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    async def ship(order_id: str) -> str:
        return await durably.recv_async("go", timeout=30) + order_id

    async def main() -> str:
        aconn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        async with aconn:
            with pytest.raises(Rollback):
                async with aconn.transaction():
                    await aconn.execute(f"INSERT INTO {orders} VALUES ('o-1')")
                    await app.enqueue_in_async(aconn, "orders", ship, "o-1", id="gone")
                    raise Rollback
            assert workflows(db) == []
            async with aconn.transaction():
                await aconn.execute(f"INSERT INTO {orders} VALUES ('o-2')")
                workflow_id = await app.enqueue_in_async(aconn, "orders", ship, "o-2")
                await app.send_in_async(aconn, workflow_id, "shipped ", topic="go")
            with pytest.raises(Rollback):
                async with aconn.transaction():
                    await app.send_in_async(aconn, workflow_id, "lost ", topic="go")
                    raise Rollback
            return workflow_id

    workflow_id = asyncio.run(main())
    assert workflows(db) == [(workflow_id, "ship", "ENQUEUED", "orders")]
    assert order_ids(db) == ["o-2"]
    app.launch()
    assert app.handle(workflow_id).result(timeout=DEADLINE) == "shipped o-2"
    assert count(db, "SELECT count(*) FROM messages") == 1


# ------------------------------------------------------------------------ Client


def test_client_enqueue_in_and_send_in(
    make_app: Callable[..., durably.App],
    pg_url: str,
    schema: str,
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="approve")
    def approve(order_id: str) -> str:
        return f"{order_id}: {durably.recv(timeout=30)}"

    app.launch()
    with durably.Client(pg_url, schema=schema) as client:
        with pytest.raises(Rollback), conn.transaction():
            client.enqueue_in(conn, "orders", "approve", "o-1", id="c-1")
            raise Rollback
        assert workflows(db) == []
        with conn.transaction():
            add_order(conn, orders, "o-2")
            workflow_id = client.enqueue_in(conn, "orders", "approve", "o-2", id="c-2")
        assert workflow_id == "c-2"
        with pytest.raises(Rollback), conn.transaction():
            client.send_in(conn, "c-2", "no")
            raise Rollback
        with conn.transaction():
            client.send_in(conn, "c-2", "yes")
        assert client.handle("c-2").result(timeout=DEADLINE) == "o-2: yes"

        async def by_async() -> str:
            aconn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
            async with aconn, aconn.transaction():
                return await client.enqueue_in_async(aconn, "orders", "approve", "o-3")

        third = asyncio.run(by_async())
        with conn.transaction():
            client.send_in(conn, third, "later")
        assert client.handle(third).result(timeout=DEADLINE) == "o-3: later"
        # A Workflow object is refused by the Client (it has no workflows of its own).
        with pytest.raises(durably.InvalidArgument, match="another app"), conn.transaction():
            client.enqueue_in(conn, "orders", approve, "o-4")
    assert count(db, "SELECT count(*) FROM messages") == 2
    assert order_ids(db) == ["o-2"]


# ------------------------------------------------------------------------ bad input


def test_bad_input_is_refused_and_the_transaction_goes_on(
    make_app: Callable[..., durably.App],
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return order_id

    enqueue, send = app.enqueue_in, app.send_in
    refusals: list[tuple[type[BaseException], str, Callable[[], Any]]] = [
        (durably.ValueEncodingError, "object", lambda: enqueue(conn, "orders", ship, object())),
        (TypeError, "cannot take", lambda: enqueue(conn, "orders", ship, "a", "b")),
        (durably.InvalidArgument, "queue", lambda: enqueue(conn, "", ship, "o")),
        (durably.InvalidArgument, "priority", lambda: enqueue(conn, "orders", ship, priority=0)),
        (durably.InvalidArgument, "delay", lambda: enqueue(conn, "orders", ship, "o", delay=-1)),
        (durably.InvalidArgument, "workflow id", lambda: enqueue(conn, "orders", ship, id="")),
        (durably.InvalidArgument, "workflow must be", lambda: enqueue(conn, "orders", 42)),  # type: ignore[arg-type]
        (durably.ValueEncodingError, "object", lambda: send(conn, "x", object())),
        (durably.InvalidArgument, "topic", lambda: send(conn, "x", 1, topic=5)),  # type: ignore[arg-type]
        (durably.InvalidArgument, "idempotency", lambda: send(conn, "x", 1, idempotency_key="")),
        (durably.UnusableConnection, "driver_connection", lambda: send(object(), "x", 1)),  # type: ignore[arg-type]
        # Statements ran here (they found no such workflow), and failed none.
        (durably.WorkflowNotFound, "nobody", lambda: send(conn, "nobody", 1)),
    ]  # fmt: skip
    for number, (error, words, call) in enumerate(refusals):
        with conn.transaction():
            with pytest.raises(error, match=words):
                call()
            add_order(conn, orders, f"o-{number}")
    assert workflows(db) == [] and count(db, "SELECT count(*) FROM messages") == 0
    assert len(order_ids(db)) == len(refusals)


def test_unusable_connections_are_refused_before_anything_runs(
    make_app: Callable[..., durably.App],
    pg_url: str,
    conn: psycopg.Connection[Any],
    db: psycopg.Connection[Any],
    orders: str,
) -> None:
    app = with_queue(make_app)

    @app.workflow(name="ship")
    def ship(order_id: str) -> str:
        return order_id

    # Autocommit with no transaction open: the write would commit at once, alone.
    with pytest.raises(durably.UnusableConnection, match="autocommit"):
        app.enqueue_in(conn, "orders", ship, "o")
    with pytest.raises(durably.UnusableConnection, match="autocommit"):
        app.send_in(conn, "x", 1)
    still_usable(conn, orders, "after-autocommit")

    # A transaction that already failed.
    with pytest.raises(Rollback), conn.transaction():
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        with pytest.raises(durably.UnusableConnection, match="already failed"):
            app.enqueue_in(conn, "orders", ship, "o")
        raise Rollback
    still_usable(conn, orders, "after-failure")

    # Another database on the same server.
    other = psycopg.conninfo.make_conninfo(pg_url, dbname="postgres")
    with psycopg.connect(other, autocommit=True) as elsewhere, elsewhere.transaction():
        with pytest.raises(durably.UnusableConnection, match="'postgres'"):
            app.enqueue_in(elsewhere, "orders", ship, "o")
        elsewhere.execute("SELECT 1")

    # A closed connection.
    closed = psycopg.connect(pg_url)
    closed.close()
    with pytest.raises(durably.UnusableConnection, match="closed"):
        app.enqueue_in(closed, "orders", ship, "o")

    # Sync and async connections swapped.
    async def swapped() -> None:
        with pytest.raises(durably.UnusableConnection, match="enqueue_in / send_in"):
            await app.enqueue_in_async(conn, "orders", ship, "o")  # type: ignore[arg-type]
        with pytest.raises(durably.UnusableConnection, match="get_raw_connection"):
            await app.enqueue_in_async(object(), "orders", ship, "o")  # type: ignore[arg-type]
        aconn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        async with aconn:
            with pytest.raises(durably.UnusableConnection, match="_async"):
                app.send_in(aconn, "x", 1)  # type: ignore[arg-type]
            with pytest.raises(durably.UnusableConnection, match="autocommit"):
                await app.send_in_async(aconn, "x", 1)

    asyncio.run(swapped())
    assert workflows(db) == [] and count(db, "SELECT count(*) FROM messages") == 0
    assert order_ids(db) == ["after-autocommit", "after-failure"]
