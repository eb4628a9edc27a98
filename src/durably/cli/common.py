"""What the commands share: database options, the Client they open, input types, output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from durably.errors import DurablyError

if TYPE_CHECKING:
    from rich.console import Console

    from durably.client import Client

F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(click.ClickException):
    """A command that could not do what it was asked: one line on stderr, exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        ctx = click.get_current_context(silent=True)
        self.where = ctx.command_path if ctx is not None else "durably"


@dataclass(frozen=True, slots=True)
class Where:
    """Which database and schema a command works on."""

    database_url: str | None
    data_dir: str | None
    schema: str


# Every command that prints something for scripts takes --json.
json_option = click.option(
    "--json", "as_json", is_flag=True, help="print JSON (for scripts) instead of text"
)


def database_options(command: F) -> F:
    """The options every command that talks to a database shares."""
    command = click.option(
        "--schema",
        default="durably",
        show_default=True,
        envvar="DURABLY_SCHEMA",
        help="schema holding durably's tables (or $DURABLY_SCHEMA)",
    )(command)
    command = click.option(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="data directory of the embedded PostgreSQL (default: ./.durably); "
        "unused with a database URL",
    )(command)
    command = click.option(
        "--database-url",
        metavar="URL",
        default=None,
        help="PostgreSQL URL (default: $DURABLY_DATABASE_URL, else an embedded PostgreSQL 18 "
        "in --data-dir)",
    )(command)
    return command


@contextmanager
def failures() -> Iterator[None]:
    """Turn durably's errors into one line for the user (no traceback)."""
    try:
        yield
    except DurablyError as exc:
        raise CommandFailed(str(exc)) from None


@contextmanager
def connected(where: Where) -> Iterator[Client]:
    """A Client on the database and schema of the options, closed afterwards."""
    from durably.client import Client

    with failures():
        # Never migrate from here: a mistyped --schema must not create an empty schema.
        client = Client(
            where.database_url, schema=where.schema, data_dir=where.data_dir, migrate=False
        )
        try:
            yield client
        finally:
            client.close()


def resolve_url(where: Where) -> tuple[str, Callable[[], None] | None]:
    """The URL the options name, as the Client would pick it (an embedded server is
    started when there is none), and how to release that server."""
    url = where.database_url or os.environ.get("DURABLY_DATABASE_URL") or None
    if url is not None:
        return url, None
    from durably import embedded

    with failures():
        server = embedded.acquire(where.data_dir or embedded.DEFAULT_DIR)
    return server.url, server.release


class IsoDateTime(click.ParamType):  # type: ignore[type-arg]  # generic from Click 8.3
    """An ISO 8601 date or datetime; without an offset it is local time."""

    name = "DATETIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(
                f"expected an ISO 8601 date or datetime such as 2026-01-31 or "
                f"2026-01-31T09:30:00+00:00, got {value!r}",
                param,
                ctx,
            )
        return parsed if parsed.tzinfo is not None else parsed.astimezone()


ISO_DATETIME = IsoDateTime()


# ------------------------------------------------------------------------------------ output


def console() -> Console:
    """Rich output to stdout: on a terminal its width, else wide enough that IDs are not
    folded (output read by scripts or tests should not depend on a pretend width)."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS") or 0) or 240)


def print_json(value: Any) -> None:
    """One JSON document on stdout; values JSON cannot hold are shown as their text."""
    click.echo(json.dumps(value, indent=2, default=_as_text, ensure_ascii=False))


def _as_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def when(moment: datetime | None) -> str:
    """A time for a table: local, to the second."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def compact(value: Any, width: int = 60) -> str:
    """A value on one line for a table cell, shortened to ``width`` characters."""
    if value is None:
        return "-"
    text = json.dumps(value, default=_as_text, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"
