"""``durably gc``: delete workflows that finished long ago (``app.gc``), with progress."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from typing import Any

import click

from durably.cli.common import Where, connected, database_options, json_option, print_json

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic from Click 8.3
    """A span of time: a number and a unit, s, m, h, d or w (30d, 12h, 90m)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        match = _SPAN.match(str(value))
        span = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))}) if match else None
        if span is None or span <= timedelta(0):
            self.fail(
                f"expected a positive number and a unit (s, m, h, d or w) such as 30d or "
                f"12h, got {value!r}",
                param,
                ctx,
            )
        return span


@click.command("gc", short_help="Delete workflows that finished long ago.")
@click.option(
    "--older-than",
    type=Duration(),
    required=True,
    help="delete what finished longer ago than this (30d, 12h, 90m)",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
    help="workflows deleted per transaction",
)  # fmt: skip
@click.option(
    "--status", "statuses", multiple=True,
    type=click.Choice(["SUCCESS", "ERROR", "CANCELLED"], case_sensitive=False),
    help="only workflows that finished so (repeatable; default: all three)",
)  # fmt: skip
@json_option
@database_options
def gc_command(
    older_than: timedelta,
    batch_size: int,
    statuses: tuple[str, ...],
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Delete workflows that finished (SUCCESS, ERROR, CANCELLED) more than --older-than
    ago, with their steps, messages, events and streams, and executor rows nobody holds
    any more. Unfinished work is never touched (docs/retention.md)."""
    progress = _progress() if sys.stderr.isatty() and not as_json else None
    with connected(Where(database_url, data_dir, schema)) as client:
        collected = client.gc(
            older_than,
            statuses=[status.upper() for status in statuses] or None,
            batch_size=batch_size,
            progress=progress,
        )
    if progress is not None:
        click.echo("", err=True)
    if as_json:
        print_json({"workflows": collected.workflows, "executors": collected.executors})
    else:
        click.echo(
            f"deleted {collected.workflows} workflow(s) and {collected.executors} executor "
            f"row(s) older than {older_than}"
        )
    return 0


def _progress() -> Any:
    def show(total: int) -> None:
        click.echo(f"\rdeleted {total} workflow(s) so far", nl=False, err=True)

    return show
