"""Creates and upgrades the system tables: numbered .sql files applied in order, once."""

from __future__ import annotations

import psycopg
from psycopg.rows import kwargs_row

from durably.store import sqlfile
from durably.store.rows import AppliedMigration


def migrate(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[str]:
    """Apply every migration this schema lacks, under an advisory lock; return their names."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute(sqlfile.statement("migrate_lock", schema), {"key": f"durably:{schema}"})
        conn.execute(sqlfile.statement("create_schema", schema))
        conn.execute(sqlfile.statement("create_migrations", schema))
        applied = conn.cursor(row_factory=kwargs_row(AppliedMigration))
        done = {
            row.version for row in applied.execute(sqlfile.statement("applied_migrations", schema))
        }
        for version, name, template in sqlfile.migrations():
            if version in done:
                continue
            conn.execute(sqlfile.render(template, schema).encode())
            conn.execute(
                sqlfile.statement("record_migration", schema), {"version": version, "name": name}
            )
            applied_now.append(name)
    return applied_now
