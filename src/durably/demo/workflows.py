"""The demo's order workflow and its four steps, as the worker processes run them."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import Any

import durably

STEPS = ("reserve_inventory", "charge_payment", "create_shipment", "send_confirmation")
"""The workflow's steps, in the order it calls them (step N is STEPS[N - 1])."""

WORKFLOW_NAME = "durably.demo.place_order"
PRICE_CENTS = 1999
APP_NAME = "durably-demo"

STARTED = re.compile(r"^step (\d+)/\d+ (\w+): started")
"""A line a step prints as it starts (group 1: its number); the demo watches for it."""


def register(
    app: durably.App, step_seconds: float, main_order: str | None = None
) -> durably.Workflow[[str, str, int], Any]:
    """Declare the demo's workflow and steps on ``app``; return the workflow.

    Names are given explicitly, so that they stay those of every earlier demo (whose
    unfinished workflows a worker may recover). Lines about orders other than
    ``main_order`` (left unfinished by an interrupted earlier demo, and finished now by
    this worker) start with that order's ID.
    """

    def tell(order_id: str, number: int, text: str) -> None:
        other = f"[{order_id}] " if order_id != main_order else ""
        print(f"{other}step {number}/{len(STEPS)} {STEPS[number - 1]}: {text}", flush=True)

    def work(order_id: str, number: int, detail: str) -> None:
        tell(order_id, number, f"started ({detail})")
        time.sleep(step_seconds)  # stands for a call to a slow external service

    def done(order_id: str, number: int, output: dict[str, Any]) -> dict[str, Any]:
        shown = json.dumps({k: v for k, v in output.items() if k != "pid"})
        tell(order_id, number, f"finished -> {shown}")
        return output

    @app.step(name="durably.demo.reserve_inventory")
    def reserve_inventory(order_id: str, sku: str, quantity: int) -> dict[str, Any]:
        work(order_id, 1, f"{quantity} x {sku}")
        return done(order_id, 1, {"reservation": f"RSV-{_tag(order_id, 1)}", "pid": os.getpid()})

    @app.step(name="durably.demo.charge_payment")
    def charge_payment(order_id: str, amount_cents: int) -> dict[str, Any]:
        work(order_id, 2, f"${amount_cents / 100:.2f}")
        output = {"charge": f"CH-{_tag(order_id, 2)}", "amount_cents": amount_cents}
        return done(order_id, 2, {**output, "pid": os.getpid()})

    @app.step(name="durably.demo.create_shipment")
    def create_shipment(order_id: str, reservation: str) -> dict[str, Any]:
        work(order_id, 3, f"for {reservation}")
        return done(order_id, 3, {"tracking": f"TRK-{_tag(order_id, 3)}", "pid": os.getpid()})

    @app.step(name="durably.demo.send_confirmation")
    def send_confirmation(order_id: str, tracking: str) -> dict[str, Any]:
        work(order_id, 4, f"email with {tracking}")
        return done(order_id, 4, {"email": f"MSG-{_tag(order_id, 4)}", "pid": os.getpid()})

    @app.workflow(name=WORKFLOW_NAME)
    def place_order(order_id: str, sku: str, quantity: int) -> Any:
        reservation = reserve_inventory(order_id, sku, quantity)
        charge = charge_payment(order_id, quantity * PRICE_CENTS)
        shipment = create_shipment(order_id, reservation["reservation"])
        confirmation = send_confirmation(order_id, shipment["tracking"])
        return {
            "order": order_id,
            "status": "confirmed",
            "charge": charge["charge"],
            "tracking": shipment["tracking"],
            "email": confirmation["email"],
        }

    return place_order


def _tag(order_id: str, number: int) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{order_id}/{number}").hex[:6].upper()
