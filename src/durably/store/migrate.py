"""Creates and upgrades the system tables: numbered .sql files applied in order, once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import kwargs_row

from durably.store import sqlfile
from durably.store.rows import AppliedMigration

if TYPE_CHECKING:
    from durably.store.dialect import Dialect


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, dialect: Dialect | None = None
) -> list[str]:
    """Apply every migration this schema lacks, under an advisory lock; return their names."""
    applied_now: list[str] = []
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
            conn.execute(sqlfile.render(template, schema).encode())
            conn.execute(
                sqlfile.statement("record_migration", schema, dialect),
                {"version": version, "name": name},
            )
            applied_now.append(name)
    return applied_now


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
    except psycopg.errors.UndefinedTable:
        return None
    return [name for version, name, _ in sqlfile.migrations() if version not in done]
