"""The ``durably`` command line.

Subcommands register themselves in :func:`build_parser`; each sets ``handler`` to a
function taking the parsed arguments and returning the process's exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import durably

Handler = Callable[[argparse.Namespace], int]


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that talks to a database shares."""
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default=None,
        help="PostgreSQL URL (default: $DURABLY_DATABASE_URL, else an embedded PostgreSQL 18 "
        "in --data-dir)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="data directory of the embedded PostgreSQL (default: ./.durably); "
        "unused with a database URL",
    )
    parser.add_argument(
        "--schema",
        default="durably",
        help="schema holding durably's tables (default: durably)",
    )


def _demo(args: argparse.Namespace) -> int:
    from durably.demo import run_demo

    return run_demo(
        database_url=args.database_url,
        data_dir=args.data_dir,
        schema=args.schema,
        step_seconds=args.step_seconds,
    )


def _worker(args: argparse.Namespace) -> int:
    from durably.errors import ConfigurationError
    from durably.worker import run_worker

    try:
        return run_worker(args.app, args.queue, args.grace, args.log_level, args.executor_id)
    except ConfigurationError as exc:
        print(f"durably worker: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durably",
        description="durably: durable Python workflows checkpointed in PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"durably {durably.__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run an order workflow, kill its process mid-way, and watch it resume",
        description="Run a four-step order workflow in a worker process, SIGKILL the worker "
        "after step 2 is recorded, start a new worker, and show the workflow resume from its "
        "last completed step. With no database URL an embedded PostgreSQL 18 is started in "
        "./.durably (no setup needed).",
    )
    _add_database_options(demo)
    demo.add_argument(
        "--step-seconds",
        type=float,
        default=0.4,
        metavar="S",
        help="how long each simulated step takes (default: 0.4)",
    )
    demo.set_defaults(handler=_demo)

    worker = commands.add_parser(
        "worker",
        help="run a worker process for an app",
        description="Import MODULE:APP (a durably.App), then recover and take over its "
        "workflows, claim queued work and fire schedules until SIGTERM/SIGINT; then stop "
        "claiming, let running work finish within --grace seconds, and hand the rest back.",
    )
    worker.add_argument("app", metavar="MODULE:APP", help="e.g. myproject.workers:app")
    worker.add_argument(
        "--queue",
        action="append",
        default=None,
        metavar="NAME",
        help="claim only from this queue (repeat for several; default: every queue of the app)",
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds running workflows get to finish on shutdown (default: 30)",
    )
    worker.add_argument(
        "--log-level",
        default="INFO",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO): INFO logs each "
        "workflow's start and end, recoveries and takeovers; WARNING step failures and "
        "retries, and what a shutdown leaves unfinished",
    )
    worker.add_argument(
        "--executor-id",
        default=None,
        metavar="ID",
        help="a stable name for this worker, one per machine or pod (its hostname, say): a "
        "restart under it recovers its own unfinished workflows at once. Never give one ID "
        "to two live processes (the second launch fails with ExecutorIdInUse). Default: "
        "the app's executor_id, else a new one per process (others then take its work "
        "over when its lease expires, or at once after a clean shutdown)",
    )
    worker.set_defaults(handler=_worker)

    # More commands (``durably doctor``, ...) are added here the same way.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``durably`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("durably: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
