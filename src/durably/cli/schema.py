"""``durably migrate``: create or upgrade durably's tables, or show the SQL that would run."""

from __future__ import annotations

import click

from durably.cli.common import Where, database_options, failures, resolve_url


@click.command("migrate", short_help="Create or upgrade the schema (--sql: show it).")
@click.option("--sql", "show_sql", is_flag=True, help="print the SQL that would run; run nothing")
@database_options
def migrate_command(
    show_sql: bool, database_url: str | None, data_dir: str | None, schema: str
) -> int:
    """Create or upgrade durably's tables in --schema (what an App or worker does when it
    connects), so that it can be done once, before deploying, by a role allowed to."""
    from durably.store.upgrade import apply_migrations, pending_sql

    url, release = resolve_url(Where(database_url, data_dir, schema))
    try:
        with failures():
            if show_sql:
                pending = pending_sql(url, schema)
            else:
                applied = apply_migrations(url, schema)
    finally:
        if release is not None:
            release()
    if show_sql:
        if not pending:
            click.echo(f"-- schema {schema} is up to date: nothing would run")
            return 0
        click.echo("BEGIN;\n")  # migrate applies them in one transaction
        for label, text in pending:
            click.echo(f"-- {label}\n{text}\n")
        click.echo("COMMIT;")
        return 0
    if applied:
        click.echo(f"schema {schema}: applied {', '.join(applied)}")
    else:
        click.echo(f"schema {schema} is up to date")
    return 0
