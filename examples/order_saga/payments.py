"""A fake payment service that deduplicates on an idempotency key, as real ones do.

``payments.ledger`` holds one line per distinct charge or refund (what the customer's
statement shows); ``payment_requests.ledger`` one line per request received. To be
realistic about why keys matter, the gateway loses its reply to the first request of
every third key after the money moved (deterministic: by a checksum of the key)."""

from __future__ import annotations

import hashlib
import time
import zlib
from pathlib import Path

from ledger import append, locked, rows

LEDGER = Path("payments.ledger")
REQUESTS = Path("payment_requests.ledger")


class GatewayTimeout(Exception):
    """No reply came: the request may or may not have been carried out."""


def _request(kind: str, key: str, fields: str) -> str:
    time.sleep(0.2)  # the card network is slow
    with locked("payments"):
        append(REQUESTS, f"{kind} {key}")
        first_try = sum(1 for row in rows(REQUESTS) if row[1] == key) == 1
        done = next((row[2] for row in rows(LEDGER) if row[1] == key), None)
        if done is None:
            done = f"{kind[:2]}_{hashlib.sha256(key.encode()).hexdigest()[:10]}"
            append(LEDGER, f"{kind} {key} {done} {fields}")
    if first_try and zlib.crc32(key.encode()) % 3 == 0:
        raise GatewayTimeout(f"{kind} {key}: no reply from the gateway")
    return done


def charge(key: str, order_id: str, cents: int) -> str:
    """Charge the order's card once per key; returns the charge's ID."""
    return _request("charge", key, f"{order_id} {cents}")


def refund(key: str, charge_id: str, cents: int) -> str:
    """Give a charge's money back once per key; returns the refund's ID."""
    charged = {row[2] for row in rows(LEDGER) if row[0] == "charge"}
    if charge_id not in charged:
        raise ValueError(f"no charge {charge_id} to refund")
    return _request("refund", key, f"{charge_id} {cents}")
