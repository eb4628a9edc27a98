"""``durably schedules list|pause|resume|trigger|backfill``: cron schedules from a shell."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from durably.cli.common import (
    ISO_DATETIME,
    Where,
    connected,
    console,
    database_options,
    iso,
    json_option,
    print_json,
    when,
)

if TYPE_CHECKING:
    from durably.schedule_control import ScheduleInfo
    from durably.workflow import WorkflowHandle


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule as the commands' JSON shows it."""
    return {
        "name": info.name,
        "workflow_name": info.workflow_name,
        "cron": info.cron,
        "timezone": info.timezone,
        "paused": info.paused,
        "catch_up": info.catch_up,
        "last_tick": iso(info.last_tick),
        "next_tick": iso(info.next_tick),
    }


def _state(info: ScheduleInfo) -> str:
    return "paused" if info.paused else "active"


@click.group("schedules")
def schedules() -> None:
    """List cron schedules, pause and resume them, and run their ticks on demand."""


@schedules.command("list")
@json_option
@database_options
def list_command(as_json: bool, database_url: str | None, data_dir: str | None, schema: str) -> int:
    """Every schedule, by name: its workflow, cron and timezone, whether it is paused,
    and its last and next tick."""
    with connected(Where(database_url, data_dir, schema)) as client:
        found = client.list_schedules()
    if as_json:
        print_json([schedule_json(info) for info in found])
        return 0
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "WORKFLOW", "CRON", "TIMEZONE", "STATE", "CATCH-UP", "LAST TICK"):
        table.add_column(column, no_wrap=True)
    table.add_column("NEXT TICK", no_wrap=True)
    for info in found:
        table.add_row(
            *map(
                Text,
                (
                    info.name,
                    info.workflow_name,
                    info.cron,
                    info.timezone,
                    _state(info),
                    "yes" if info.catch_up else "no",
                    when(info.last_tick),
                    when(info.next_tick),
                ),
            )
        )
    out = console()
    if found:
        out.print(table)
    out.print(f"{len(found)} schedule(s)", markup=False, highlight=False)
    return 0


@schedules.command("pause")
@click.argument("name")
@json_option
@database_options
def pause_command(
    name: str, as_json: bool, database_url: str | None, data_dir: str | None, schema: str
) -> int:
    """Stop starting the schedule's ticks (workflows already started go on)."""
    with connected(Where(database_url, data_dir, schema)) as client:
        before = client.get_schedule(name)
        after = client.pause_schedule(name)
    _steered(as_json, "pause", before, after)
    return 0


@schedules.command("resume")
@click.argument("name")
@json_option
@database_options
def resume_command(
    name: str, as_json: bool, database_url: str | None, data_dir: str | None, schema: str
) -> int:
    """Start a paused schedule again from its next tick (the ticks that fell while it was
    paused are not run: backfill them)."""
    with connected(Where(database_url, data_dir, schema)) as client:
        before = client.get_schedule(name)
        after = client.resume_schedule(name)
    _steered(as_json, "resume", before, after)
    return 0


def _steered(as_json: bool, action: str, before: ScheduleInfo, after: ScheduleInfo) -> None:
    if as_json:
        print_json({**schedule_json(after), "action": action, "before": _state(before)})
        return
    change = (
        f"still {_state(after)} ({action} changed nothing)"
        if before.paused == after.paused
        else f"{_state(before)} -> {_state(after)}"
    )
    nxt = f", next tick {when(after.next_tick)}" if after.next_tick is not None else ""
    click.echo(f"schedule {after.name}: {change}{nxt}")


@schedules.command("trigger")
@click.argument("name")
@click.option(
    "--at",
    type=ISO_DATETIME,
    default=None,
    help="run it as the tick of this ISO 8601 time (no offset: local time; default: now)",
)
@json_option
@database_options
def trigger_command(
    name: str,
    at: datetime | None,
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Have the schedule's workflow run once now, as the tick of --at, by a worker that
    registers it. Its ID is sched:NAME:TICK, so triggering the same tick again runs
    nothing more. Works on paused schedules too."""
    with connected(Where(database_url, data_dir, schema)) as client:
        handle = client.trigger(name, at)
        status = handle.status().value
    if as_json:
        print_json({"schedule": name, "id": handle.id, "status": status})
    else:
        click.echo(f"schedule {name}: tick {handle.id} ({status})")
    return 0


@schedules.command("backfill")
@click.argument("name")
@click.option(
    "--start",
    type=ISO_DATETIME,
    required=True,
    help="the first tick time to run (inclusive; ISO 8601, no offset: local time)",
)
@click.option(
    "--end",
    type=ISO_DATETIME,
    required=True,
    help="run ticks before this time (exclusive; ISO 8601, no offset: local time)",
)
@json_option
@database_options
def backfill_command(
    name: str,
    start: datetime,
    end: datetime,
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Have every tick of the schedule in [--start, --end) run by the workers that
    register its workflow (at most 10,000). Ticks that already ran are not run again, so
    backfilling twice adds nothing. Works on paused schedules too."""
    if end < start:
        raise click.BadParameter(
            f"--end ({end.isoformat()}) is before --start ({start.isoformat()})",
            ctx=click.get_current_context(),
            param_hint="'--end'",
        )
    progress = _progress() if sys.stderr.isatty() and not as_json else None
    with connected(Where(database_url, data_dir, schema)) as client:
        handles = client.backfill(name, start, end, progress=progress)
    if progress is not None:
        click.echo("", err=True)
    ids = [handle.id for handle in handles]
    if as_json:
        print_json(
            {
                "schedule": name,
                "start": iso(start),
                "end": iso(end),
                "ticks": len(ids),
                "ids": ids,
            }
        )
    else:
        click.echo(f"schedule {name}: {len(ids)} tick(s) from {when(start)} to {when(end)}")
        _show_some(handles)
    return 0


def _show_some(handles: list[WorkflowHandle[Any]], most: int = 10) -> None:
    for handle in handles[:most]:
        click.echo(f"  {handle.id}")
    if len(handles) > most:
        click.echo(f"  ... and {len(handles) - most} more (--json lists them all)")


def _progress() -> Any:
    def show(done: int, total: int) -> None:
        click.echo(f"\rstarted {done} of {total} tick(s)", nl=False, err=True)

    return show
