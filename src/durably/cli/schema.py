"""``durably migrate``: create or upgrade durably's tables, or show the SQL that would run;
``--grant ROLE`` gives a worker's role the least it needs on them."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from durably.cli.common import Where, database_options, failures, resolve_url


@click.command("migrate", short_help="Create or upgrade the schema (--sql: show it).")
@click.option("--sql", "show_sql", is_flag=True, help="print the SQL that would run; run nothing")
@click.option(
    "--grant",
    "role",
    metavar="ROLE",
    default=None,
    help="then grant ROLE what a worker needs on the schema and nothing more (USAGE on it; "
    "SELECT, INSERT, UPDATE, DELETE on its tables; USAGE on its sequences)",
)
@database_options
def migrate_command(
    show_sql: bool, role: str | None, database_url: str | None, data_dir: str | None, schema: str
) -> int:
    """Create or upgrade durably's tables in --schema (what an App or worker does when it
    connects), so that it can be done once, before deploying, by a role allowed to.

    With --grant ROLE, workers can then connect as ROLE, which cannot create, alter or
    drop anything (docs/cli.md, "Least privilege"). Run it again after each upgrade:
    tables a new version adds are granted then."""
    from durably.store.grant import check_role, find_role, grant_sql, grant_worker
    from durably.store.upgrade import apply_migrations, pending_sql

    if role is not None:
        with failures():
            check_role(role)
    url, release = resolve_url(Where(database_url, data_dir, schema))
    try:
        with failures():
            if role is not None:
                find_role(url, schema, role)  # an unknown role: refused before any change
            if show_sql:
                pending = pending_sql(url, schema)
                grants = grant_sql(url, schema, role) if role is not None else ""
            else:
                applied = apply_migrations(
                    url, schema, _progress() if sys.stderr.isatty() else None
                )
                facts = grant_worker(url, schema, role) if role is not None else None
    finally:
        if release is not None:
            release()
    if show_sql:
        # Names in comments are shown as Python literals: a newline in a schema or role
        # name must not end the comment and turn the rest into a statement of the script.
        if not pending and not grants:
            click.echo(f"-- schema {schema!r} is up to date: nothing would run")
            return 0
        click.echo("BEGIN;\n")  # migrate applies them in one transaction
        if not pending:
            click.echo(f"-- schema {schema!r} is up to date\n")
        for label, text in pending:
            click.echo(f"-- {label}\n{text}\n")
        if grants:
            click.echo(f"-- grants of role {role!r}\n{grants}")
        click.echo("COMMIT;")
        return 0
    if applied and sys.stderr.isatty():
        click.echo("", err=True)
    if applied:
        click.echo(f"schema {schema}: applied {', '.join(applied)}")
    else:
        click.echo(f"schema {schema} is up to date")
    if facts is not None:
        click.echo(f"role {role}: granted what a worker needs on schema {schema}")
        if facts.superuser or facts.owner:
            what = "a superuser" if facts.superuser else f"an owner of schema {schema}"
            click.echo(
                f"warning: role {role} is {what}: it keeps every right; connect workers "
                f"as a role of their own",
                err=True,
            )
    return 0


def _progress() -> Callable[[str], None]:
    """On a terminal: the migration being applied, on one line of stderr."""

    def show(name: str) -> None:
        click.echo(f"\rapplying {name} ...{' ' * 20}", nl=False, err=True)

    return show
