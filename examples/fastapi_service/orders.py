"""The worker's code: the order workflow and its steps. Only workers import it, run as
``durably worker orders:app`` from this directory; the web process enqueues the workflow
by its name and never imports this module."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import services

import durably

app = durably.App()
# Two orders at a time per worker process: slow enough to watch, and to kill half-way.
queue = app.queue("orders", worker_concurrency=2)


@dataclass(frozen=True)
class Order:
    customer: str
    item: str
    cents: int


def say(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write per line: orders run side by side
    sys.stdout.flush()


@app.step(retries=3, interval=0.5)
def charge(order: Order) -> str:
    """An outside call, so at least once; its key (the same on every run) makes it once."""
    charge_id = services.charge(durably.step_key(), order.customer, order.cents)
    say(f"{durably.workflow_id()}: charged {order.customer} {order.cents} cents ({charge_id})")
    return charge_id


@app.step(retries=3, interval=0.5)
def confirm(order: Order, charge_id: str) -> str:
    message_id = services.email(
        durably.step_key(), order.customer, f"paid:{order.item}:{charge_id}"
    )
    say(f"{durably.workflow_id()}: emailed {order.customer} ({message_id})")
    return message_id


@app.workflow(name="fulfil_order")
def fulfil_order(order: Order) -> dict[str, str]:
    """Charge, then confirm by email; the stage event lets the web app show progress."""
    charge_id = charge(order)
    durably.set_event("stage", "charged")
    message_id = confirm(order, charge_id)
    durably.set_event("stage", "confirmed")
    return {"charge": charge_id, "email": message_id}
