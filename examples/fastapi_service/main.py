"""A FastAPI web app that takes orders and enqueues a durable workflow for each through
``durably.Client``, and reports each order's status; a worker process beside it runs
the workflows (orders.py). The web process never imports the worker's code.

    python main.py                  the demo: web and worker as subprocesses, a few requests
    python main.py web --port N     the web app alone, under uvicorn (or: uvicorn main:api)
    durably worker orders:app       the worker, run from this directory
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field

import durably

HERE = Path(__file__).resolve().parent
UNFINISHED = ("ENQUEUED", "PENDING", "DELAYED")
WORKER = [sys.executable, "-m", "durably.cli", "worker", "orders:app"]  # `durably worker`
client = durably.Client()  # no URL: $DURABLY_DATABASE_URL, else ./.durably/


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await client.list_workflows_async(limit=1)  # connect before the first request
    yield
    client.close()


api = FastAPI(title="orders", lifespan=lifespan)


class OrderIn(BaseModel):
    customer: str = Field(min_length=1, max_length=100, pattern=r"^\S+$")
    item: str = Field(min_length=1, max_length=100, pattern=r"^\S+$")
    cents: int = Field(gt=0)


async def view(order_id: str) -> dict[str, Any] | None:
    """What GET /orders/{id} shows: the workflow's status, its stage event and result."""
    found = await client.list_workflows_async(ids=[order_id])
    if not found:
        return None
    info, stage = found[0], await client.get_event_async(order_id, "stage", timeout=0)
    result = info.output if info.status == durably.Status.SUCCESS else None
    error = repr(info.error) if info.error is not None else None
    return {"id": order_id, "status": info.status, "stage": stage, "result": result, "error": error}


@api.post("/orders", status_code=202)
async def place_order(
    order: OrderIn, response: Response, idempotency_key: str = Header(max_length=200)
) -> dict[str, Any] | None:
    """Enqueue the order's workflow, its ID made from the Idempotency-Key header: the same
    key again attaches to the same workflow (200) and never starts a second one."""
    order_id = f"order-{idempotency_key}"
    found = await client.list_workflows_async(ids=[order_id])
    if found and found[0].inputs["args"] != [order.model_dump()]:
        raise HTTPException(409, "this Idempotency-Key was used for another order")
    if found:
        response.status_code = 200
    else:
        # Two requests with one key racing past the check above still make one workflow:
        # enqueueing an existing ID attaches to it.
        await client.enqueue_async("orders", "fulfil_order", order.model_dump(), id=order_id)
    return await view(order_id)


@api.get("/orders/{order_id}")
async def order_status(order_id: str) -> dict[str, Any]:
    if (shown := await view(order_id)) is None:
        raise HTTPException(404, f"no order {order_id!r}")
    return shown


@api.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


ORDERS = {  # fixed keys: the demo run again after a kill finds its own orders
    "demo-1": {"customer": "ada", "item": "kettle", "cents": 3900},
    "demo-2": {"customer": "grace", "item": "mugs", "cents": 2400},
    "demo-3": {"customer": "alan", "item": "teapot", "cents": 5800},
}


def wait_until_up(http: httpx.Client) -> None:
    deadline = time.monotonic() + 120  # a first run also starts the embedded PostgreSQL
    while True:
        try:
            http.get("/health").raise_for_status()
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def demo() -> None:
    """Start the web app and a worker, place a few orders over HTTP, show their results."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    # A fixed executor ID: a worker restarted after a crash takes its work back at once.
    worker = [*WORKER, "--executor-id", "orders-worker-1", "--log-level", "WARNING"]
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "main.py"), "web", "--port", str(port)]),
        subprocess.Popen(worker, env={**os.environ, "PYTHONPATH": path}),
    ]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_until_up(http)
            print(f"web app at http://127.0.0.1:{port}, a worker beside it", flush=True)
            again = [("demo-1", ORDERS["demo-1"]), ("demo-2", {**ORDERS["demo-2"], "cents": 1})]
            for key, body in [*ORDERS.items(), *again]:
                reply = http.post("/orders", json=body, headers={"Idempotency-Key": key})
                got = reply.json()
                shown = got.get("detail") or f"{got['id']} {got['status']}"
                print(f"POST /orders {body} key {key} -> {reply.status_code} {shown}", flush=True)
            for key in ORDERS:
                while (got := http.get(f"/orders/order-{key}").json())["status"] in UNFINISHED:
                    time.sleep(0.2)
                print(f"GET /orders/order-{key} -> {got['status']} {got['result']}", flush=True)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)  # the worker finishes what it runs, then exits
        for proc in procs:
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("web",))
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.mode == "web":
        uvicorn.run(api, host="127.0.0.1", port=args.port, log_level="warning")
    else:
        demo()


if __name__ == "__main__":
    main()
