"""A fake paid model-and-tools HTTP API for the agent example: slow, flaky, billed per call."""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PAID = Path("paid_calls.log")  # each billed call: "<idempotency key> <what> <cents>"
REQUESTS = Path("requests.log")  # each request received: "<pid> <key> <attempt> <outcome>"
STALL = 1.0  # seconds a stalled request hangs, far past the agent's timeout
SEED = "agent-demo"  # the failures follow from it, so every run fails the same calls

# What the fake model asks for, one tool after another, before it answers.
PLAN: list[tuple[str, dict[str, Any]]] = [
    ("search_flights", {"origin": "LIS", "destination": "BER", "date": "2026-12-20"}),
    ("search_hotels", {"city": "Berlin", "nights": 3}),
    ("get_weather", {"city": "Berlin", "date": "2026-12-20"}),
    ("convert_currency", {"amount": 641, "from": "EUR", "to": "USD"}),
    ("book_trip", {"flight": "TP 540", "hotel": "Hotel Kastanie"}),
]
TOOLS: dict[str, dict[str, Any]] = {
    "search_flights": {"flight": "TP 540", "price_eur": 182},
    "search_hotels": {"hotel": "Hotel Kastanie", "price_eur": 459},
    "get_weather": {"forecast": "cold, light snow", "high_c": 2},
    "convert_currency": {"usd": 694.93},
    "book_trip": {"confirmation": "BK-7Q2X"},
}


def model_reply(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The next move of the "model": the next tool of the plan, then a final answer."""
    results = [m for m in messages if m["role"] == "tool"]
    if len(results) < len(PLAN):
        tool, args = PLAN[len(results)]
        return {"tool": tool, "args": args, "text": f"I will call {tool}."}
    booked = "BK-" in results[-1]["content"]
    text = (
        "Booked TP 540 and Hotel Kastanie (BK-7Q2X), 641 EUR; pack for snow."
        if booked
        else "Found TP 540 and Hotel Kastanie for 641 EUR; not booked, as you declined."
    )
    return {"tool": None, "args": {}, "text": text}


class _Service(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        # Billing survives restarts (like a provider's): a key billed once is never billed
        # again, even when the same request is sent twice.
        self.billed = (
            {line.split()[0] for line in PAID.read_text().splitlines()}
            if (PAID.exists())
            else set()
        )

    def next_attempt(self, key: str) -> int:
        with self.lock:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            return self.attempts[key]

    def bill(self, key: str, what: str, cents: int) -> None:
        with self.lock:
            if key not in self.billed:
                self.billed.add(key)
                with PAID.open("a") as f:
                    f.write(f"{key} {what} {cents}\n")


class _Handler(BaseHTTPRequestHandler):
    server: _Service

    def do_POST(self) -> None:
        key = self.headers.get("Idempotency-Key", "-")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        attempt = self.server.next_attempt(key)
        # About a third of the calls fail: a stall or a 503. Never past the third attempt.
        fate = random.Random(f"{SEED}:{key}:{attempt}").random() if attempt < 3 else 1.0
        outcome = "stall" if fate < 0.13 else "503" if fate < 0.33 else "ok"
        with REQUESTS.open("a") as f:
            f.write(f"{os.getpid()} {key} {attempt} {outcome}\n")
        time.sleep(STALL if outcome == "stall" else 0.03 + 0.05 * fate)
        if outcome != "ok":
            return self._send(503 if outcome == "503" else 504, {"error": outcome})
        if self.path == "/v1/model":
            reply = model_reply(body["messages"])
            what, cents = "model", 2 + len(body["messages"])
            answer: dict[str, Any] = {"reply": reply}
        else:
            what, cents = self.path.rsplit("/", 1)[-1], 1
            answer = {"result": TOOLS[what]}
        self.server.bill(key, what, cents)
        self._send(200, {**answer, "cost_cents": cents})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # A stalled request's client gave up waiting (its timeout) and will retry.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the ledgers say what happened


def serve() -> str:
    """Start the service on a free local port in a daemon thread; return its base URL."""
    server = _Service()
    threading.Thread(target=server.serve_forever, daemon=True, name="fake-service").start()
    return f"http://127.0.0.1:{server.server_address[1]}"
