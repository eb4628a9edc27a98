"""examples/fastapi_service: the web app and a worker as real processes; orders placed
over HTTP, the worker SIGKILLed after some were charged, a new worker started: every
order finishes (its status and result over HTTP), each charge and email is made once,
and an Idempotency-Key sent again never starts a second workflow."""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import httpx
import psycopg
from psycopg import sql

from examples_harness import lines, wait_for_lines
from support import wait_until

CUSTOMERS = ("ada", "grace", "alan", "edsger", "barbara", "donald")
WORKER = ("-m", "durably.cli", "worker", "orders:app", "--executor-id", "orders-worker-1")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def up(http: httpx.Client) -> bool:
    try:
        return http.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def test_orders_placed_over_http_finish_once_across_a_worker_kill(
    example: Any, pg_url: str, schema: str
) -> None:
    ex = example("fastapi_service")
    port = free_port()
    web = ex.start("main.py", "web", "--port", str(port), log="web")
    first = ex.start(*WORKER, log="worker1")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    wait_until(lambda: up(http), 60, "the web app to answer")

    orders = {
        f"k-{n}": {"customer": customer, "item": f"item-{n}", "cents": 1000 + n}
        for n, customer in enumerate(CUSTOMERS, 1)
    }
    for key, body in orders.items():
        reply = http.post("/orders", json=body, headers={"Idempotency-Key": key})
        assert reply.status_code == 202, reply.text
        assert reply.json()["id"] == f"order-{key}"
    # The same key again: the same workflow (200), or a refusal when the order differs.
    again = http.post("/orders", json=orders["k-1"], headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["id"] == "order-k-1", again.text
    other = {**orders["k-2"], "cents": 1}
    assert http.post("/orders", json=other, headers={"Idempotency-Key": "k-2"}).status_code == 409
    assert http.get("/orders/order-nope").status_code == 404

    charges, emails = ex.workdir / "charges.ledger", ex.workdir / "emails.ledger"
    wait_for_lines(charges, 2)
    ex.kill(first)
    assert len(lines(emails)) < len(orders), "every order was done before the kill"
    # Under the same executor ID, the new worker takes the killed one's orders back at
    # once; the queued ones it claims as usual.
    second = ex.start(*WORKER, log="worker2")

    def all_done() -> dict[str, Any] | None:
        shown = {key: http.get(f"/orders/order-{key}").json() for key in orders}
        return shown if all(s["status"] == "SUCCESS" for s in shown.values()) else None

    shown = wait_until(all_done, 60, "every order to finish")
    assert {s["stage"] for s in shown.values()} == {"confirmed"}

    # Each charge and email made once (their steps may have run again after the kill:
    # the gateway and the mailer answered a repeated key without doing it twice).
    charged = [line.split() for line in lines(charges)]
    assert Counter(fields[1] for fields in charged) == dict.fromkeys(CUSTOMERS, 1)
    assert {f[1]: int(f[2]) for f in charged} == {
        o["customer"]: o["cents"] for o in orders.values()
    }
    mailed = [line.split() for line in lines(emails)]
    assert Counter(fields[1] for fields in mailed) == dict.fromkeys(CUSTOMERS, 1)
    # Each order's result names its own charge and email, as the ledgers have them.
    by_customer = {f[1]: f[0] for f in charged}
    mail_by_customer = {f[1]: f[0] for f in mailed}
    for key, order in orders.items():
        result = shown[key]["result"]
        assert result == {
            "charge": by_customer[order["customer"]],
            "email": mail_by_customer[order["customer"]],
        }
    requests = lines(ex.workdir / "requests.ledger")
    assert len(requests) >= 2 * len(orders)  # at least once each

    # A key sent again after the order finished: its result, nothing run again.
    late = http.post("/orders", json=orders["k-3"], headers={"Idempotency-Key": "k-3"})
    assert late.status_code == 200 and late.json()["status"] == "SUCCESS", late.text
    assert len(lines(charges)) == len(orders)
    with psycopg.connect(pg_url) as conn:
        query = sql.SQL("SELECT id, status FROM {}.workflows WHERE name = 'fulfil_order'")
        recorded = dict(conn.execute(query.format(sql.Identifier(schema))).fetchall())
    assert recorded == {f"order-{key}": "SUCCESS" for key in orders}

    http.close()
    second.terminate()  # SIGTERM: the worker stops cleanly
    assert "durably worker: stopped" in ex.finish(second, timeout=60)
    ex.kill(web)
