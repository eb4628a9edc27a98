"""Schema upgrades on request (``durably migrate``): apply them, or show their SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from durably.store import sqlfile
from durably.store.database import connect_timeout, unreachable
from durably.store.dialect import dialect_for
from durably.store.migrate import migrate


def connect(url: str) -> psycopg.Connection[Any]:
    dialect_for(url)  # a URL that is not PostgreSQL's is refused with ConfigurationError
    try:
        return psycopg.connect(url, autocommit=True, **connect_timeout(url))
    except psycopg.OperationalError as exc:
        raise unreachable(url, exc) from None


def apply_migrations(
    url: str, schema: str, progress: Callable[[str], None] | None = None
) -> list[str]:
    """Create or upgrade ``schema`` as connecting an App does; the names of the
    migrations applied now (empty when it was up to date); ``progress`` hears each
    name as it starts."""
    with connect(url) as conn:
        return migrate(conn, schema, dialect_for(url), progress)


def pending_sql(url: str, schema: str) -> list[tuple[str, str]]:
    """What ``apply_migrations`` would run on ``schema``, as (label, SQL) pairs in order,
    without changing anything: each migration with the row that records it (and, for a
    schema with no migrations table yet, the statements that create the schema and it)."""
    dialect = dialect_for(url)
    pending: list[tuple[str, str]] = []
    with connect(url) as conn:
        try:
            rows = conn.execute(sqlfile.statement("applied_migrations", schema, dialect))
            done: set[int] | None = {int(row[0]) for row in rows.fetchall()}
        except psycopg.errors.UndefinedTable:
            done = None  # no schema or no migrations table yet: everything is pending
        if done is None:
            for name in ("create_schema", "create_migrations"):
                text = _ended(sqlfile.statement(name, schema, dialect))
                pending.append(("schema", f"{text};"))
        record = sqlfile.statement("record_migration", schema, dialect)
        literal = psycopg.ClientCursor(conn)  # binds parameters as literals, runs nothing
        for version, name, template in sqlfile.migrations():
            if done is None or version not in done:
                recorded = literal.mogrify(record, {"version": version, "name": name})
                body = _ended(sqlfile.render(template, schema))
                pending.append((name, f"{body};\n{_ended(recorded)};"))
    return pending


def _ended(text: str) -> str:
    """A statement without the comment lines after its end or its final semicolon, so
    that one can be added (a block of the .sql files runs on to the next block's name)."""
    lines = text.strip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines).rstrip().rstrip(";")
