"""The shop's own data: its orders, its tables (in the user's database, schema ``shop``
or ``$SHOP_SCHEMA``) and the SQL that creates and reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg
from psycopg import sql

SCHEMA = os.environ.get("SHOP_SCHEMA", "shop")
STOCK = {"kettle": 10, "teapot": 10, "mug": 50}
TABLES = {
    # No unique constraint on ref: a second insert of an order would not be refused,
    # so one row per order is the transaction step's doing.
    "orders": "seq bigserial PRIMARY KEY, ref text NOT NULL, customer text NOT NULL,"
    " sku text NOT NULL, qty int NOT NULL, cents int NOT NULL, status text NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now()",
    "stock": "sku text PRIMARY KEY, available int NOT NULL",
    "stock_moves": "seq bigserial PRIMARY KEY, ref text NOT NULL, sku text NOT NULL,"
    " delta int NOT NULL, kind text NOT NULL",
}


@dataclass
class Order:
    id: str
    customer: str
    sku: str
    qty: int
    cents: int
    address: str


ORDERS = [
    Order("o-1", "ada", "kettle", 1, 3900, "12 Analytical Row, London, UK"),
    Order("o-2", "grace", "mug", 4, 2400, "1 Compiler Lane, Paris, FR"),
    Order("o-3", "alan", "teapot", 2, 5800, "7 Bletchley Road, Milton Keynes, UK"),
    Order("o-4", "edsger", "kettle", 3, 11700, "42 Lost Island Way, Atlantis"),
    Order("o-5", "barbara", "mug", 6, 3600, "9 Clu Straat, Amsterdam, NL"),
    Order("o-6", "donald", "teapot", 1, 2900, "3 Tex Gasse, Berlin, DE"),
]


def table(name: str) -> sql.Identifier:
    """A table of the shop's schema, quoted."""
    return sql.Identifier(SCHEMA, name)


def create(conn: psycopg.Connection) -> None:
    """The schema and tables, and the opening stock (once: later runs change nothing)."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    for name, columns in TABLES.items():
        create_table = sql.SQL("CREATE TABLE IF NOT EXISTS {} (" + columns + ")")
        conn.execute(create_table.format(table(name)))
    insert = sql.SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT DO NOTHING")
    for sku, available in STOCK.items():
        conn.execute(insert.format(table("stock")), (sku, available))


def report(conn: psycopg.Connection) -> list[str]:
    """The orders and the stock as the shop's database has them now."""
    orders = conn.execute(
        sql.SQL("SELECT ref, status, count(*) FROM {} GROUP BY ref, status ORDER BY ref").format(
            table("orders")
        )
    ).fetchall()
    stock = conn.execute(
        sql.SQL("SELECT sku, available FROM {} ORDER BY sku").format(table("stock"))
    )
    return [
        "orders: " + ", ".join(f"{ref} {status} (x{n})" for ref, status, n in orders),
        "stock: " + ", ".join(f"{sku} {available}" for sku, available in stock.fetchall()),
    ]
