"""``durably cancel``, ``resume`` and ``fork``: steering one workflow by ID."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from durably.cli.common import (
    CommandFailed,
    Where,
    connected,
    database_options,
    json_option,
    print_json,
)

if TYPE_CHECKING:
    from durably.client import Client


def _status(client: Client, workflow_id: str) -> str:
    """The workflow's status now (WorkflowNotFound for an unknown ID)."""
    return client.handle(workflow_id).status().value


def _report(as_json: bool, action: str, workflow_id: str, before: str, after: str) -> None:
    if as_json:
        print_json({"id": workflow_id, "action": action, "before": before, "after": after})
    elif before == after:
        click.echo(f"{workflow_id}: still {after} ({action} changed nothing)")
    else:
        click.echo(f"{workflow_id}: {before} -> {after}")


@click.command("cancel", short_help="Cancel a workflow (--children: its descendants too).")
@click.argument("workflow_id", metavar="ID")
@click.option("--children", is_flag=True, help="cancel its descendant workflows too")
@json_option
@database_options
def cancel_command(
    workflow_id: str,
    children: bool,
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Cancel a workflow: it stops at its next durable call (a finished one is left as it
    is)."""
    with connected(Where(database_url, data_dir, schema)) as client:
        before = _status(client, workflow_id)
        client.cancel(workflow_id, children=children)
        after = _status(client, workflow_id)
    _report(as_json, "cancel", workflow_id, before, after)
    return 0


@click.command("resume", short_help="Run a cancelled, dead-lettered or queued workflow now.")
@click.argument("workflow_id", metavar="ID")
@json_option
@database_options
def resume_command(
    workflow_id: str, as_json: bool, database_url: str | None, data_dir: str | None, schema: str
) -> int:
    """Run a cancelled or dead-lettered workflow again from its last checkpoint, or start
    a queued or delayed one now (a finished one is left as it is: fork it to retry)."""
    with connected(Where(database_url, data_dir, schema)) as client:
        before = _status(client, workflow_id)
        client.resume(workflow_id)
        after = _status(client, workflow_id)
    _report(as_json, "resume", workflow_id, before, after)
    return 0


@click.command("fork", short_help="Run a workflow again from step N, as a new workflow.")
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--from-step",
    type=click.IntRange(min=1),
    required=True,
    metavar="N",
    help="the first step to run again (steps before it are copied, not re-run)",
)
@click.option("--new-id", default=None, metavar="ID", help="the new workflow's ID (default: new)")
@json_option
@database_options
def fork_command(
    workflow_id: str,
    from_step: int,
    new_id: str | None,
    as_json: bool,
    database_url: str | None,
    data_dir: str | None,
    schema: str,
) -> int:
    """Start a new workflow with the same inputs that copies steps 1 to N-1 of ID and runs
    again from step N (a worker that knows the workflow's code runs it)."""
    with connected(Where(database_url, data_dir, schema)) as client:
        steps = client.list_steps(workflow_id)  # WorkflowNotFound for an unknown ID
        last = max((step.step for step in steps), default=0)
        if from_step > max(last, 1):
            recorded = f"its last recorded step is {last}" if last else "it recorded no steps"
            raise CommandFailed(
                f"--from-step {from_step} is beyond the last step of {workflow_id!r}: "
                f"{recorded}; use 1 to {max(last, 1)}"
            )
        forked = client.fork(workflow_id, from_step, new_id=new_id)
        status = forked.status().value
    if as_json:
        print_json(
            {
                "id": forked.id,
                "forked_from": workflow_id,
                "from_step": from_step,
                "copied_steps": from_step - 1,
                "status": status,
            }
        )
    else:
        copied = f"steps 1-{from_step - 1} copied" if from_step > 1 else "no steps copied"
        click.echo(
            f"forked {workflow_id} from step {from_step} as {forked.id} ({copied}, {status})"
        )
    return 0
