"""Creates and upgrades the system tables: numbered .sql files applied in order, once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import kwargs_row

from durably.errors import ConfigurationError
from durably.store import sqlfile
from durably.store.redaction import hide
from durably.store.rows import AppliedMigration

if TYPE_CHECKING:
    from durably.store.dialect import Dialect


def migrate(
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    dialect: Dialect | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Apply every migration this schema lacks, under an advisory lock; return their names.

    A schema that is up to date is only read: no lock, no DDL, so that a role with no
    right to create anything (``durably migrate --grant``) can connect. ``progress``
    hears each migration's name before it runs (in the one transaction of them all)."""
    if _up_to_date(conn, schema, dialect):
        return []
    applied_now: list[str] = []
    try:
        with conn.transaction():
            conn.execute(
                sqlfile.statement("migrate_lock", schema, dialect), {"key": f"durably:{schema}"}
            )
            conn.execute(sqlfile.statement("create_schema", schema, dialect))
            conn.execute(sqlfile.statement("create_migrations", schema, dialect))
            applied = conn.cursor(row_factory=kwargs_row(AppliedMigration))
            done = {
                row.version
                for row in applied.execute(sqlfile.statement("applied_migrations", schema, dialect))
            }
            for version, name, template in sqlfile.migrations():
                if version in done:
                    continue
                if progress is not None:
                    progress(name)
                conn.execute(sqlfile.render(template, schema).encode())
                conn.execute(
                    sqlfile.statement("record_migration", schema, dialect),
                    {"version": version, "name": name},
                )
                applied_now.append(name)
    except psycopg.errors.InsufficientPrivilege as exc:
        refused = hide(str(exc).strip(), [conn.info.password])
        raise ConfigurationError(
            f"schema {schema!r} is missing or out of date, and this role may not create or "
            f"upgrade it ({refused}); run `durably migrate` as its owner first "
            f"(docs/cli.md, Least privilege)"
        ) from exc
    return applied_now


def _up_to_date(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, dialect: Dialect | None
) -> bool:
    """Whether every migration is recorded as applied (False when it cannot be read)."""
    try:
        return unapplied(conn, schema, dialect) == []
    except psycopg.errors.InsufficientPrivilege:
        return False  # not readable: the full path says why


def unapplied(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, dialect: Dialect | None = None
) -> list[str] | None:
    """The names of the migrations ``schema`` lacks, changing nothing; None when it has
    no durably tables at all."""
    try:
        with conn.transaction():
            applied = conn.cursor(row_factory=kwargs_row(AppliedMigration))
            done = {
                row.version
                for row in applied.execute(sqlfile.statement("applied_migrations", schema, dialect))
            }
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return None
    return [name for version, name, _ in sqlfile.migrations() if version not in done]
