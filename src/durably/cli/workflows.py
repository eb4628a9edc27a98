"""``durably workflows list`` and ``durably workflows show``: looking at workflows;
``durably workflows set-version``: moving them to another application version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from durably.cli.common import (
    ISO_DATETIME,
    CommandFailed,
    Where,
    compact,
    connected,
    console,
    database_options,
    iso,
    json_option,
    print_json,
    when,
)
from durably.humane import duration
from durably.info import StepInfo, WorkflowInfo, error_fields
from durably.status import Status
from durably.versions import MOVABLE


def workflow_json(info: WorkflowInfo) -> dict[str, Any]:
    """A workflow's summary as the listing's JSON shows it."""
    return {
        "id": info.id,
        "name": info.name,
        "status": info.status.value,
        "queue": info.queue,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
        "completed_at": iso(info.completed_at),
        "served": info.served,
        "executor_id": info.executor_id,
        "parent_id": info.parent_id,
        "forked_from": info.forked_from,
        "recovery_attempts": info.recovery_attempts,
        "app_version": info.app_version,
    }


def step_json(step: StepInfo) -> dict[str, Any]:
    return {
        "step": step.step,
        "kind": step.kind,
        "name": step.name,
        "started_at": iso(step.started_at),
        "completed_at": iso(step.completed_at),
        "duration_seconds": (step.completed_at - step.started_at).total_seconds(),
        "attempts": step.attempts,
        "output": step.output,
        "error": error_fields(step.error),
        "child_id": step.child_id,
    }


@click.group("workflows")
def workflows() -> None:
    """List workflows and show one with its steps."""


@workflows.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in Status], case_sensitive=False),
    help="only workflows in this status (repeat for several)",
)
@click.option("--name", default=None, help="only workflows of this name")
@click.option(
    "--version",
    "app_version",
    metavar="VERSION",
    default=None,
    help="only workflows recorded under this application version",
)
@click.option(
    "--created-after",
    type=ISO_DATETIME,
    default=None,
    help="only those created at or after this ISO 8601 time (no offset: local time)",
)
@click.option(
    "--created-before",
    type=ISO_DATETIME,
    default=None,
    help="only those created before this ISO 8601 time (no offset: local time)",
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=50, show_default=True, help="at most this many"
)
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, show_default=True, help="skip this many"
)
@json_option
@database_options
def list_command(
    statuses: tuple[str, ...],
    name: str | None,
    app_version: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    offset: int,
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Workflows matching every filter given, newest first."""
    with connected(Where(database_url, data_dir, schema)) as client:
        found = client.list_workflows(
            status=list(statuses) or None,
            name=name,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            offset=offset,
            descending=True,
            app_version=app_version,
        )
    if as_json:
        print_json([workflow_json(info) for info in found])
        return 0
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("NAME", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("QUEUE", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("UPDATED", no_wrap=True)
    table.add_column("SERVED", no_wrap=True)
    table.add_column("VERSION", no_wrap=True)
    for info in found:
        served = "-" if info.served is None else ("yes" if info.served else "no")
        table.add_row(
            *map(
                Text,
                (
                    info.id,
                    info.name,
                    info.status.value,
                    info.queue or "-",
                    when(info.created_at),
                    when(info.updated_at),
                    served,
                    info.app_version or "-",
                ),
            )
        )
    out = console()
    if found:
        out.print(table)
    more = " (there may be more: --offset to page on)" if limit and len(found) == limit else ""
    out.print(f"{len(found)} workflow(s){more}", highlight=False)
    return 0


@workflows.command("show")
@click.argument("workflow_id", metavar="ID")
@json_option
@database_options
def show_command(
    workflow_id: str, as_json: bool, database_url: str | None, data_dir: str | None, schema: str
) -> int:
    """A workflow's status, inputs, output or error, and every step it recorded."""
    with connected(Where(database_url, data_dir, schema)) as client:
        client.handle(workflow_id)  # WorkflowNotFound for an unknown ID
        found = client.list_workflows(ids=[workflow_id])
        steps = client.list_steps(workflow_id)
    if not found:  # deleted between the two reads
        raise CommandFailed(f"no workflow with id {workflow_id!r} exists")
    info = found[0]
    shown = {
        **workflow_json(info),
        "inputs": info.inputs,
        "output": info.output,
        "error": error_fields(info.error),
        "steps": [step_json(step) for step in steps],
    }
    if as_json:
        print_json(shown)
        return 0
    _show_text(shown)
    return 0


def _show_text(shown: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    fields = [
        ("id", "ID"),
        ("name", "name"),
        ("status", "status"),
        ("queue", "queue"),
        ("created_at", "created"),
        ("updated_at", "updated"),
        ("completed_at", "completed"),
        ("executor_id", "executor"),
        ("parent_id", "parent"),
        ("forked_from", "forked from"),
        ("app_version", "version"),
    ]
    for key, label in fields:
        value = shown[key]
        if value is not None and key.endswith("_at"):
            value = when(datetime.fromisoformat(value))
        if value is not None:
            out.print(f"{label + ':':<13}{value}", highlight=False, soft_wrap=True, markup=False)
    out.print(
        f"{'inputs:':<13}{compact(shown['inputs'], 2000)}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    error = shown["error"]
    if error is not None:
        out.print(
            f"{'error:':<13}{error['type']}: {error['message']}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        if error["traceback"]:
            out.print(error["traceback"].rstrip(), highlight=False, soft_wrap=True, markup=False)
    elif shown["status"] == Status.SUCCESS.value:
        out.print(
            f"{'output:':<13}{compact(shown['output'], 2000)}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    steps = shown["steps"]
    if not steps:
        out.print("no steps recorded", highlight=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("STEP", "KIND", "NAME", "DURATION", "ATTEMPTS", "OUTPUT / ERROR", "CHILD"):
        table.add_column(column, no_wrap=column != "OUTPUT / ERROR")
    for step in steps:
        failed = step["error"]
        result = f"{failed['type']}: {failed['message']}" if failed else compact(step["output"])
        took = duration(
            datetime.fromisoformat(step["completed_at"])
            - datetime.fromisoformat(step["started_at"])
        )
        cells = (
            str(step["step"]),
            step["kind"],
            step["name"],
            took,
            str(step["attempts"]),
            result,
        )
        table.add_row(*map(Text, (*cells, step["child_id"] or "-")))
    out.print(table)


@workflows.command("set-version")
@click.option(
    "--from",
    "from_version",
    metavar="VERSION",
    default=None,
    help="move the workflows recorded under this application version",
)
@click.option(
    "--to", "to_version", metavar="VERSION", required=True, help="the version to move them to"
)
@click.option(
    "--id",
    "ids",
    metavar="ID",
    multiple=True,
    help="move this workflow (repeat for several; with --from, only those of that version)",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in MOVABLE], case_sensitive=False),
    help="only workflows in this status (repeat for several; default: all that may still run)",
)
@click.option("--name", default=None, help="only workflows of this name")
@json_option
@database_options
def set_version_command(
    from_version: str | None,
    to_version: str,
    ids: tuple[str, ...],
    statuses: tuple[str, ...],
    name: str | None,
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Move unfinished workflows to another application version, so that workers of that
    version recover them (after a deploy left them with no worker of their own version).
    Only their recorded version changes: a run going on now is not disturbed. Move work
    only to code that can replay what it recorded (docs/upgrades.md)."""
    if from_version is None and not ids:
        raise click.UsageError("say which workflows to move: --from VERSION and/or --id ID")
    with connected(Where(database_url, data_dir, schema)) as client:
        moved = client.set_version(
            to_version,
            ids=list(ids) or None,
            from_version=from_version,
            status=[s.upper() for s in statuses] or None,
            name=name,
        )
    if as_json:
        print_json({"moved": moved, "from": from_version, "to": to_version})
        return 0
    source = f" from version {from_version!r}" if from_version is not None else ""
    console().print(f"moved {moved} workflow(s){source} to version {to_version!r}", highlight=False)
    return 0
