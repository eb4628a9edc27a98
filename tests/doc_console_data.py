"""The data the ```console transcripts of the docs show, made before a page's commands run
(tests/test_doc_console.py).

One function per page, given the test server's URL and the page's schema: it runs real
workflows with an ``App`` (launched, then shut down, so no worker is alive while the
commands run and nothing moves under them) and leaves the rows the page's commands list,
show and steer. What a transcript shows of them must be true of what is made here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg import sql

import durably
from durably.errors import StepRetriesExceeded

# The application version the cli.md workflows are recorded under.
CLI_VERSION = "2026-12-01"


def _sql(pg_url: str, schema: str, statement: str) -> None:
    """Run ``statement`` with ``{schema}`` naming the page's schema."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))


def send_email(to: str) -> None:
    durably.set_event("status", f"sent to {to}")


def nightly_report(scheduled_at: datetime) -> None:
    """The scheduled report (a stand-in)."""


def sync_prices(scheduled_at: datetime) -> None:
    """The scheduled price sync (a stand-in)."""


def cli_page(pg_url: str, schema: str) -> None:
    """docs/cli.md: ``order-17``, a checkout whose step 2 ``charge`` failed 3 times with
    ``ValueError: card declined``; ``order-18``, waiting for an approval (PENDING, so it
    can be cancelled and resumed); three e-mails sent 40 days ago (for ``gc``); the
    queues ``emails`` (40 waiting, no worker) and ``reports`` (3 delayed); the schedules
    ``nightly_report`` and ``sync_prices``."""
    app = durably.App(pg_url, schema=schema, app_version=CLI_VERSION)

    @app.step(name="reserve")
    def reserve(sku: str, qty: int) -> dict[str, object]:
        return {"sku": sku, "qty": qty}

    @app.step(name="charge", retries=2, interval=0.01)
    def charge(order_id: str) -> str:
        raise ValueError("card declined")

    @app.workflow(name="checkout")
    def checkout(order_id: str) -> str:
        reserve("A-1", 2)
        return charge(order_id)

    @app.workflow(name="approve_order")
    def approve_order(order_id: str) -> bool:
        return bool(durably.recv("approval", timeout=86400))

    sent_email = app.workflow(name="send_email")(send_email)

    orders = app.queue("orders")
    emails = app.queue("emails", concurrency=10)
    app.queue("reports")
    with app:
        failed = orders.enqueue(checkout.options(id="order-17"), "order-17")
        try:
            failed.result(timeout=30)
        except StepRetriesExceeded:
            pass
        else:
            raise AssertionError("order-17 should have failed")
        waiting = approve_order.options(id="order-18").start("order-18")
        sent = [emails.enqueue(sent_email, f"user{n}@example.com") for n in range(3)]
        for handle in sent:
            handle.result(timeout=30)
        # order-18 parked in its recv: the shutdown leaves it PENDING.
        assert waiting.status() == "PENDING", waiting.status()
    # The e-mails went 40 days ago: gc --older-than 30d deletes them.
    _sql(
        pg_url,
        schema,
        "UPDATE {schema}.workflows SET created_at = created_at - interval '40 days', "
        "started_at = started_at - interval '40 days', "
        "updated_at = updated_at - interval '40 days', "
        "completed_at = completed_at - interval '40 days' WHERE name = 'send_email'",
    )
    # What no worker runs: put on the queues by a Client (which runs nothing), and
    # schedules stored by an app that is not launched (so no tick runs).
    with durably.Client(pg_url, schema=schema) as client:
        readers = [(f"reader{n}@example.com",) for n in range(40)]
        client.enqueue_many("emails", "send_email", readers)
        for day in ("2026-12-01", "2026-12-02", "2026-12-03"):
            client.enqueue("reports", "build_report", day, delay=3600)
    idle = durably.App(pg_url, schema=schema, app_version=CLI_VERSION)
    for fn in (nightly_report, sync_prices):
        idle.workflow(name=fn.__name__)(fn)
    idle.create_schedule("nightly_report", "nightly_report", "0 3 * * *")
    idle.create_schedule(
        "sync_prices", "sync_prices", "*/15 * * * *", timezone="Europe/Paris", catch_up=True
    )
    idle.shutdown()


def upgrades_page(pg_url: str, schema: str) -> None:
    """docs/upgrades.md: three ``checkout`` and two ``refund`` workflows of version ``A``
    waiting for a message (PENDING), for ``set-version --from A --to B``."""
    app = durably.App(pg_url, schema=schema, app_version="A")

    @app.workflow(name="checkout")
    def checkout(order_id: str) -> object:
        return durably.recv("payment", timeout=86400)

    @app.workflow(name="refund")
    def refund(order_id: str) -> object:
        return durably.recv("approval", timeout=86400)

    with app:
        for n in (1, 2, 3):
            checkout.options(id=f"order-{n}").start(f"order-{n}")
        for n in (4, 5):
            refund.options(id=f"refund-{n}").start(f"order-{n}")
        # Parked in their recv, or not started yet: the shutdown leaves them PENDING.


def doctor_page(pg_url: str, schema: str) -> None:
    """docs/doctor.md: the schema, with autovacuum turned off for its workflows table
    (a finding that fails)."""
    with durably.Client(pg_url, schema=schema) as client:
        client.list_workflows(limit=1)  # migrates the schema
    _sql(pg_url, schema, "ALTER TABLE {schema}.workflows SET (autovacuum_enabled = false)")


SETUPS: dict[str, Callable[[str, str], None]] = {
    "docs/cli.md": cli_page,
    "docs/upgrades.md": upgrades_page,
    "docs/doctor.md": doctor_page,
}
