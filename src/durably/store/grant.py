"""Least privileges for a worker's role (``durably migrate --grant``): roles/worker.sql."""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import NamedTuple

from psycopg import sql
from psycopg.rows import kwargs_row

from durably.errors import ConfigurationError
from durably.store.upgrade import connect

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# The grants, in the order they run.
GRANTS = (
    "grant_schema_usage",
    "grant_tables",
    "revoke_migrations_writes",
    "grant_sequences",
    "grant_future_tables",
    "grant_future_sequences",
)


class RoleFacts(NamedTuple):
    """What the server says of a role: None when it does not exist."""

    superuser: bool
    owner: bool


@functools.cache
def _blocks() -> dict[str, str]:
    text = resources.files("durably.store").joinpath("roles", "worker.sql").read_text("utf-8")
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def check_role(role: object) -> str:
    """A role name PostgreSQL keeps as given (it would cut a longer one to 63 bytes)."""
    if not isinstance(role, str) or not role or len(role.encode()) > 63 or "\x00" in role:
        raise ConfigurationError(f"a role name must be 1 to 63 bytes without NUL, got {role!r}")
    return role


def grant_statements(schema: str, role: str) -> list[sql.Composed]:
    """The grants of a worker's role on ``schema``, the role and schema quoted."""
    names = {"schema": sql.Identifier(schema), "role": sql.Identifier(check_role(role))}
    return [sql.SQL(_blocks()[name]).format(**names) for name in GRANTS]


def grant_sql(url: str, schema: str, role: str) -> str:
    """The grants as SQL text, one statement a line (``migrate --sql --grant``)."""
    with connect(url) as conn:
        return "".join(f"{st.as_string(conn)};\n" for st in grant_statements(schema, role))


def find_role(url: str, schema: str, role: str) -> RoleFacts:
    """What ``role`` is; ConfigurationError when it does not exist."""
    with connect(url) as conn:
        cursor = conn.cursor(row_factory=kwargs_row(RoleFacts))
        found = cursor.execute(
            _blocks()["role_facts"].encode(), {"schema": schema, "role": check_role(role)}
        ).fetchone()
    if found is None:
        raise ConfigurationError(
            f"role {role!r} does not exist; create it first (CREATE ROLE ... LOGIN "
            f"PASSWORD ...), then run migrate --grant again"
        )
    return found


def grant_worker(url: str, schema: str, role: str) -> RoleFacts:
    """Grant ``role`` what a worker needs on ``schema`` and nothing more, in one
    transaction; ConfigurationError when the role does not exist (nothing is granted).
    Returns what the role is, so that a caller can say when the grants change nothing."""
    statements = grant_statements(schema, role)
    found = find_role(url, schema, role)
    with connect(url) as conn, conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return found
