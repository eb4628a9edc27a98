"""``durably demo`` and ``durably worker``: the commands that run workflows."""

from __future__ import annotations

import click

from durably.cli.common import database_options


@click.command("demo", short_help="Watch a workflow survive its worker being killed.")
@database_options
@click.option(
    "--step-seconds",
    type=float,
    default=0.4,
    metavar="S",
    help="how long each simulated step takes (default: 0.4)",
)
def demo_command(
    database_url: str | None, data_dir: str | None, schema: str, step_seconds: float
) -> int:
    """Run a four-step order workflow in a worker process, SIGKILL the worker after step 2
    is recorded, start a new worker, and show the workflow resume from its last completed
    step. With no database URL an embedded PostgreSQL 18 is started in ./.durably (no
    setup needed)."""
    from durably.demo import run_demo

    return run_demo(
        database_url=database_url,
        data_dir=data_dir,
        schema=schema,
        step_seconds=step_seconds,
    )


@click.command("worker", short_help="Run a worker process for MODULE:APP.")
@click.argument("app", metavar="MODULE:APP")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="claim only from this queue (repeat for several; default: every queue of the app)",
)
@click.option(
    "--grace",
    type=float,
    default=30.0,
    metavar="S",
    help="seconds running workflows get to finish on shutdown (default: 30)",
)
@click.option(
    "--log-level",
    default="INFO",
    metavar="LEVEL",
    help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO): INFO logs each "
    "workflow's start and end, recoveries and takeovers; WARNING step failures and "
    "retries, and what a shutdown leaves unfinished",
)
@click.option(
    "--executor-id",
    default=None,
    metavar="ID",
    help="a stable name for this worker, one per machine or pod (its hostname, say): a "
    "restart under it recovers its own unfinished workflows at once. Never give one ID "
    "to two live processes (the second launch fails with ExecutorIdInUse). Default: "
    "the app's executor_id, else a new one per process (others then take its work "
    "over when its lease expires, or at once after a clean shutdown)",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="N",
    help="serve Prometheus metrics at http://HOST:N/metrics (needs durably[prometheus]; "
    "see docs/telemetry.md)",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    metavar="HOST",
    help="the address --metrics-port binds (default: 127.0.0.1; 0.0.0.0 for every interface)",
)
def worker_command(
    app: str,
    queues: tuple[str, ...],
    grace: float,
    log_level: str,
    executor_id: str | None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Import MODULE:APP (a durably.App, e.g. myproject.workers:app), then recover and take
    over its workflows, claim queued work and fire schedules until SIGTERM/SIGINT; then
    stop claiming, let running work finish within --grace seconds, and hand the rest
    back."""
    from durably.errors import ConfigurationError, DurablyError
    from durably.worker import run_worker

    try:
        return run_worker(
            app, list(queues) or None, grace, log_level, executor_id, metrics_port, metrics_host
        )
    except ConfigurationError as exc:
        click.echo(f"durably worker: {exc}", err=True)
        return 2
    except DurablyError as exc:  # the database cannot be reached, say: one line
        click.echo(f"durably worker: {exc}", err=True)
        return 1
