"""``durably doctor``: check a PostgreSQL server for durably (exit 1 when a check fails)."""

from __future__ import annotations

import click

from durably.cli.common import (
    Where,
    console,
    database_options,
    failures,
    json_option,
    print_json,
    resolve_url,
)

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@click.command("doctor", short_help="Check a server for what durably needs and what is slow.")
@click.argument("url", metavar="[URL]", required=False, default=None)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="M",
    help="worker processes to plan connections for (default: the live executors of --schema)",
)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="connections each worker may open (default: durably's most, 29)",
)
@click.option(
    "--session-age",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="report transactions open longer than this (they hold back vacuum)",
)
@json_option
@database_options
def doctor_command(
    url: str | None,
    workers: int | None,
    pool_size: int | None,
    session_age: float,
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Check the server of URL or --database-url (default: $DURABLY_DATABASE_URL, else
    the embedded one) and --schema: its version, asynchronous I/O, commit and WAL settings,
    memory, autovacuum and bloat of durably's tables, connections against the workers'
    pools, long open transactions, missing indexes, the schema's version and the clock
    skew of live workers. Each finding is ok, warn or fail, with its reason and the
    setting to change; the exit code is 1 when any fails (docs/doctor.md)."""
    from durably.doctor import diagnose

    if url is not None and database_url is not None and url != database_url:
        raise click.UsageError("give the URL once: as an argument or as --database-url")
    url, release = resolve_url(Where(url or database_url, data_dir, schema))
    try:
        with failures():
            report = diagnose(
                url, schema, workers=workers, pool_size=pool_size, session_age=session_age
            )
    finally:
        if release is not None:
            release()
    summary = {level: report.count(level) for level in ("ok", "warn", "fail")}
    if as_json:
        print_json(
            {
                "server_version": report.server_version,
                "schema": report.schema,
                "summary": summary,
                "findings": [
                    {
                        "check": f.check,
                        "level": f.level,
                        "subject": f.subject,
                        "reason": f.reason,
                        "fix": f.fix,
                    }
                    for f in report.findings
                ],
            }
        )
    else:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("LEVEL", no_wrap=True)
        table.add_column("CHECK", no_wrap=True)
        table.add_column("REASON", ratio=3)
        table.add_column("FIX", ratio=2)
        for f in report.findings:
            table.add_row(
                Text(f.level, style=_STYLE[f.level]),
                Text(f.check),
                Text(f.reason),
                Text(f.fix or "-"),
            )
        out = console()
        out.print(table)
        out.print(
            f"PostgreSQL {report.server_version}, schema {schema}: {summary['ok']} ok, "
            f"{summary['warn']} warn, {summary['fail']} fail",
            markup=False,
            highlight=False,
        )
    return 1 if report.failed else 0
