"""A fake carrier: books a shipment once per idempotency key (``shipments.ledger``) and
refuses, for good, an address in a country it does not deliver to."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from ledger import append, locked, rows

SHIPMENTS = Path("shipments.ledger")
COUNTRIES = {"UK", "FR", "DE", "NL"}


class AddressRefused(Exception):
    """The carrier will never deliver there: retrying cannot help."""


def ship(key: str, order_id: str, address: str) -> str:
    """Book the parcel; returns its tracking number."""
    time.sleep(0.3)  # the carrier's API
    country = address.rsplit(",", 1)[-1].strip()
    if country not in COUNTRIES:
        raise AddressRefused(f"the carrier does not deliver to {country!r}")
    with locked("shipping"):
        booked = next((row[1] for row in rows(SHIPMENTS) if row[0] == key), None)
        if booked is None:
            booked = "TR" + hashlib.sha256(key.encode()).hexdigest()[:8].upper()
            append(SHIPMENTS, f"{key} {booked} {order_id}")
    return booked
