"""The bank's own data: its tables (in the user's database, schema ``bank`` or
``$BANK_SCHEMA``, beside durably's) and the SQL that writes and reads them."""

from __future__ import annotations

import os

import psycopg
from psycopg import sql

SCHEMA = os.environ.get("BANK_SCHEMA", "bank")
TABLES = {
    # No unique constraint on payment: one row per payment is the transaction step's doing.
    "entries": "seq bigserial PRIMARY KEY, payment text NOT NULL, account text NOT NULL,"
    " cents int NOT NULL, message text NOT NULL",
    "balances": "account text PRIMARY KEY, cents bigint NOT NULL",
}


def table(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, name)


def create(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    for name, columns in TABLES.items():
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table(name), sql.SQL(columns))
        )


def post(conn: psycopg.Connection, payment: str, account: str, cents: int, message: str) -> int:
    """Add the payment's entry and credit its account; the account's new balance."""
    conn.execute(
        sql.SQL("INSERT INTO {} (payment, account, cents, message) VALUES (%s, %s, %s, %s)").format(
            table("entries")
        ),
        (payment, account, cents, message),
    )
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {0} VALUES (%s, %s) ON CONFLICT (account)"
            " DO UPDATE SET cents = {0}.cents + EXCLUDED.cents RETURNING cents"
        ).format(table("balances")),
        (account, cents),
    ).fetchone()
    assert row is not None
    return int(row[0])


def report(conn: psycopg.Connection) -> list[str]:
    """Two lines: how many entries for how many payments, and every balance."""
    count = sql.SQL("SELECT count(*), count(DISTINCT payment) FROM {}").format(table("entries"))
    entries = conn.execute(count).fetchone()
    assert entries is not None
    balances = sql.SQL("SELECT account, cents FROM {} ORDER BY account").format(table("balances"))
    rows = conn.execute(balances).fetchall()
    return [
        f"entries: {entries[0]} rows for {entries[1]} payments",
        "balances: " + ", ".join(f"{account} {cents / 100:.2f}" for account, cents in rows),
    ]
