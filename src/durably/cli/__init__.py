"""The ``durably`` command line (Click): its commands, and one line per error.

Each command lives in a module of this package and is added to :data:`root` here;
:func:`main` runs it and turns every failure into one line on stderr and an exit code
(2 for bad usage, 1 for a command that could not do what it was asked).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

import durably
from durably.cli.common import CommandFailed
from durably.cli.dashboard import dashboard_command
from durably.cli.doctor import doctor_command
from durably.cli.gc import gc_command
from durably.cli.queues import queues_command
from durably.cli.run import demo_command, worker_command
from durably.cli.schedules import schedules
from durably.cli.schema import migrate_command
from durably.cli.steer import cancel_command, fork_command, resume_command
from durably.cli.workflows import workflows

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(durably.__version__, prog_name="durably", message="%(prog)s %(version)s")
def root() -> None:
    """durably: durable Python workflows checkpointed in PostgreSQL."""


for command in (
    demo_command,
    worker_command,
    workflows,
    cancel_command,
    resume_command,
    fork_command,
    migrate_command,
    gc_command,
    queues_command,
    dashboard_command,
    schedules,
    doctor_command,
):
    root.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``durably`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        with click.Context(root, info_name="durably", **CONTEXT) as ctx:
            click.echo(root.get_help(ctx), err=True)
        return 2
    try:
        result = root.main(args, prog_name="durably", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "durably"
        message = " ".join(exc.format_message().split())
        click.echo(f"{where}: {message} (see '{where} --help')", err=True)
        return exc.exit_code
    except CommandFailed as exc:
        click.echo(f"{exc.where}: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"durably: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("durably: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0
