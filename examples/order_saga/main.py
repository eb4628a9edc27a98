"""An order saga: record the order, reserve stock, charge, ship; when shipping refuses
for good, compensate (refund, release the stock) and cancel the order.

    python main.py          run (or resume) the six orders and print their outcomes
"""

from __future__ import annotations

import sys

import payments
import psycopg
import shipping
import shop
from psycopg import sql
from shop import ORDERS, Order

import durably

# A fixed executor ID: a run restarted after a crash takes its own unfinished orders
# back at once instead of waiting for their lease to expire.
app = durably.App(executor_id="order-saga")
orders_queue = app.queue("orders", concurrency=3)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write per line: orders run side by side


@app.transaction()
def create_tables(conn: psycopg.Connection) -> None:
    shop.create(conn)


@app.transaction(isolation="read committed")
def report(conn: psycopg.Connection) -> list[str]:
    return shop.report(conn)


@app.transaction()
def record_order(conn: psycopg.Connection, order: Order) -> int:
    """The order's row, committed with this step's checkpoint: written exactly once."""
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (ref, customer, sku, qty, cents, status)"
            " VALUES (%s, %s, %s, %s, %s, 'placed') RETURNING seq"
        ).format(shop.table("orders")),
        (order.id, order.customer, order.sku, order.qty, order.cents),
    ).fetchone()
    assert row is not None
    return int(row[0])


@app.transaction()
def move_stock(conn: psycopg.Connection, ref: str, sku: str, delta: int, kind: str) -> int:
    """Reserve (delta < 0) or release stock, with a row in stock_moves: exactly once."""
    row = conn.execute(
        sql.SQL(
            "UPDATE {} SET available = available + %s WHERE sku = %s RETURNING available"
        ).format(shop.table("stock")),
        (delta, sku),
    ).fetchone()
    if row is None or row[0] < 0:
        raise ValueError(f"{sku}: not enough stock")  # rolls the update back
    conn.execute(
        sql.SQL("INSERT INTO {} (ref, sku, delta, kind) VALUES (%s, %s, %s, %s)").format(
            shop.table("stock_moves")
        ),
        (ref, sku, delta, kind),
    )
    return int(row[0])


@app.transaction()
def set_status(conn: psycopg.Connection, ref: str, status: str) -> None:
    conn.execute(
        sql.SQL("UPDATE {} SET status = %s WHERE ref = %s").format(shop.table("orders")),
        (status, ref),
    )


@app.step(retries=4, interval=0.2)
def charge(order: Order) -> str:
    """An outside call, so at least once: the key makes the gateway charge once."""
    charge_id = payments.charge(durably.step_key(), order.id, order.cents)
    say(f"{order.id}: charged {order.cents} cents ({charge_id})")
    return charge_id


@app.step(retries=4, interval=0.2)
def refund(order: Order, charge_id: str) -> str:
    refund_id = payments.refund(durably.step_key(), charge_id, order.cents)
    say(f"{order.id}: refunded {order.cents} cents ({refund_id})")
    return refund_id


@app.step(retries=3, interval=0.2, retry_on=lambda e: not isinstance(e, shipping.AddressRefused))
def ship(order: Order) -> str:
    tracking = shipping.ship(durably.step_key(), order.id, order.address)
    say(f"{order.id}: shipped, tracking {tracking}")
    return tracking


@app.workflow(name="order_saga")
def order_saga(order: Order) -> str:
    """Each step forward has its compensation, run in reverse order if a later one fails."""
    record_order(order)
    move_stock(order.id, order.sku, -order.qty, "reserve")
    durably.set_event("stage", "reserved")
    charge_id = charge(order)
    durably.set_event("stage", "charged")
    try:
        tracking = ship(order)
    except shipping.AddressRefused as refused:
        say(f"{order.id}: shipping refused ({refused}); compensating")
        refund(order, charge_id)
        move_stock(order.id, order.sku, order.qty, "release")
        set_status(order.id, "cancelled")
        durably.set_event("stage", "cancelled")
        return f"cancelled: {refused}; refunded and stock released"
    set_status(order.id, "shipped")
    durably.set_event("stage", "shipped")
    return f"shipped: {tracking}"


def main() -> None:
    with app:
        create_tables()  # outside a workflow: a plain transaction, run each time
        handles = [
            order_saga.options(id=f"order-{o.id}", queue=orders_queue.name).start(o) for o in ORDERS
        ]
        say(f"{len(handles)} orders on queue 'orders' (3 at once)")
        for order, handle in zip(ORDERS, handles, strict=True):
            say(f"{handle.id} ({order.customer}): {handle.result(timeout=120)}")
        for line in report():
            say(line)


if __name__ == "__main__":
    main()
