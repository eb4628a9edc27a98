"""examples/order_saga: six orders killed with SIGKILL after some were charged and run
again: each order row written once, each charge made once, the order shipping refused
refunded and its stock released once, and every order in its final state."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from examples_harness import lines, rows, wait_for_lines

ORDERS = {"o-1": 3900, "o-2": 2400, "o-3": 5800, "o-4": 11700, "o-5": 3600, "o-6": 2900}
REFUSED = "o-4"  # its address is in a country the carrier does not deliver to


def test_order_saga_survives_sigkill_with_each_effect_once(
    example: Any, pg_url: str, schema: str, own_schema: str
) -> None:
    ex = example("order_saga", SHOP_SCHEMA=own_schema)
    payments = ex.workdir / "payments.ledger"

    first = ex.start("main.py", log="first")
    wait_for_lines(payments, 2)
    ex.kill(first)
    assert len(lines(ex.workdir / "shipments.ledger")) < 5, "every order shipped before the kill"
    # The killed run had committed these orders' rows (and their checkpoints) already.
    recorded = rows(pg_url, own_schema, "SELECT ref FROM orders")
    assert len(recorded) >= 2

    out = ex.run("main.py", log="second")
    for ref in ORDERS:
        expected = "cancelled" if ref == REFUSED else "shipped"
        assert re.search(rf"^order-{ref} \(\w+\): {expected}: ", out, re.MULTILINE), out

    # The user's table: one row per order, in its final status.
    orders = rows(pg_url, own_schema, "SELECT ref, status, cents FROM orders ORDER BY ref")
    assert orders == [
        (ref, "cancelled" if ref == REFUSED else "shipped", cents) for ref, cents in ORDERS.items()
    ]

    # The payment service: one distinct charge per order (whatever the retries and the
    # replay after the kill sent), and one refund, of the refused order's charge.
    book = [line.split() for line in lines(payments)]
    charges = {fields[3]: fields for fields in book if fields[0] == "charge"}
    assert Counter(f[3] for f in book if f[0] == "charge") == dict.fromkeys(ORDERS, 1)
    assert {ref: int(f[4]) for ref, f in charges.items()} == ORDERS
    refunds = [f for f in book if f[0] == "refund"]
    assert len(refunds) == 1
    assert refunds[0][3:] == [charges[REFUSED][2], str(ORDERS[REFUSED])]
    requests = Counter(line.split()[0] for line in lines(ex.workdir / "payment_requests.ledger"))
    assert requests["charge"] > len(ORDERS)  # lost replies were retried with their key

    # The stock: each order reserved once, only the refused one released, once.
    moves = rows(pg_url, own_schema, "SELECT ref, kind, count(*) FROM stock_moves GROUP BY 1, 2")
    assert sorted(moves) == sorted(
        [(ref, "reserve", 1) for ref in ORDERS] + [(REFUSED, "release", 1)]
    )
    stock = dict(rows(pg_url, own_schema, "SELECT sku, available FROM stock"))
    assert stock == {"kettle": 10 - 1, "mug": 50 - 4 - 6, "teapot": 10 - 2 - 1}

    # The carrier: one parcel per shipped order, none for the refused one.
    shipped = Counter(line.split()[2] for line in lines(ex.workdir / "shipments.ledger"))
    assert shipped == Counter(ref for ref in ORDERS if ref != REFUSED)

    # durably's record: every saga finished (the refused one by compensating).
    statuses = rows(
        pg_url, schema, "SELECT id, status FROM workflows WHERE name = 'order_saga' ORDER BY id"
    )
    assert statuses == [(f"order-{ref}", "SUCCESS") for ref in ORDERS]
