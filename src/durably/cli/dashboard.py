"""``durably dashboard``: serve the web dashboard of a schema (the ``dashboard`` extra)."""

from __future__ import annotations

import os

import click

from durably.cli.common import CommandFailed, Where, connected, database_options, failures
from durably.errors import DurablyError
from durably.store.redaction import database_shown

TOKEN_VARIABLE = "DURABLY_DASHBOARD_TOKEN"  # noqa: S105  # a variable name, not a secret


@click.command("dashboard")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on; any but loopback needs --token",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8321, show_default=True, help="TCP port"
)
@click.option(
    "--token",
    default=None,
    metavar="TOKEN",
    help=f"require this token (default: ${TOKEN_VARIABLE}); open the dashboard once "
    "with ?token=TOKEN, or send Authorization: Bearer TOKEN",
)
@click.option("--read-only", is_flag=True, help="hide the buttons and refuse every change")
@database_options
def dashboard_command(
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Serve the web dashboard: workflows, their steps, queues and schedules, with cancel,
    resume and fork buttons (each confirmed; CSRF-protected)."""
    token = token or os.environ.get(TOKEN_VARIABLE) or None
    try:
        from durably.dashboard.settings import Settings

        settings = Settings(host=host, port=port, token=token, read_only=read_only)
        from durably.dashboard.server import serve
    except DurablyError as exc:  # a refused address, or the extra is missing
        raise CommandFailed(str(exc)) from None
    where = Where(database_url, data_dir, schema)
    shown = database_shown(database_url or os.environ.get("DURABLY_DATABASE_URL"))
    mode = " (read-only)" if read_only else ""
    login = " (needs its token)" if token else ""
    announce = (
        f"durably dashboard of schema {schema!r} on {shown}{mode}: "
        f"http://{host if ':' not in host else f'[{host}]'}:{port}/{login}"
    )
    with connected(where) as client, failures():
        serve(client, settings, announce)
    return 0
