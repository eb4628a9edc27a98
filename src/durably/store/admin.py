"""Server-level administration: whether a server answers, and creating a database.

The embedded server manager uses these, so that creating databases (and, later, roles)
stays in the store with all other SQL.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from durably.errors import DatabaseUnavailable
from durably.store.redaction import scrub

_CONNECT_TIMEOUT = 5  # libpq's connect_timeout for these probes (libpq's minimum is 2)
_TOO_MANY_CLIENTS = "53300"


def reachable(url: str) -> bool:
    """Whether the server answers at ``url``: it connects, or it is up and just full."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT):
            return True
    except psycopg.OperationalError as exc:
        return exc.sqlstate == _TOO_MANY_CLIENTS or "too many clients" in str(exc)


def ensure_database(url: str, name: str) -> None:
    """Create database ``name`` on the server of ``url`` (an existing database to connect
    to) unless it exists; DatabaseUnavailable says why it could not."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot create the database {name!r}: {scrub(str(exc), url)}"
        ) from exc
