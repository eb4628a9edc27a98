"""A database password never shows: not in errors, reprs, logs, nor the CLI's output.

Every path a URL or a driver error can take to something printed is run with a URL
holding a distinctive password, in the URL and the keyword (``password=...``) forms:
a launch that cannot connect, a role that may not log in, a live app whose connections
are cut, ``repr`` of an App and a Client, the CLI's commands with ``--database-url`` or
``$DURABLY_DATABASE_URL``, ``durably worker``'s log and ``durably dashboard``'s banner.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

import durably
from durably.store.redaction import MASK, redact, scrub
from queueprocs.util import Fleet
from support import ROOT, Cli, wait_until

SECRET = "S3cr3t-xyz"
UNREACHABLE = (
    f"postgresql://u:{SECRET}@127.0.0.1:1/db?connect_timeout=2",
    f"host=127.0.0.1 port=1 user=u password={SECRET} dbname=db connect_timeout=2",
    f"host=127.0.0.1 port=1 user=u password='{SECRET}' dbname=db connect_timeout=2",
)


def shown(*texts: object) -> str:
    """Everything a user could see of these: strings, reprs, exceptions with their
    chained causes and tracebacks."""
    parts = []
    for text in texts:
        if isinstance(text, BaseException):
            parts.append("".join(traceback.format_exception(text)))
        parts.append(text if isinstance(text, str) else repr(text))
    return "\n".join(parts)


def assert_hidden(*texts: object, secret: str = SECRET) -> None:
    text = shown(*texts)
    assert secret not in text, f"the password shows in:\n{text}"


# --------------------------------------------------------------------- the helper


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        (f"postgresql://u:{SECRET}@db.example.com:5432/app", "postgresql://u@db.example.com"),
        (f"postgres://u:{SECRET}@a:5432,b:5433/app?sslmode=require", "a:5432,b:5433/app"),
        (f"postgresql://u@h/app?password={SECRET}&connect_timeout=3", "connect_timeout=3"),
        (f"postgresql://u@h/app?sslpassword={SECRET}", "postgresql://u@h/app"),
        (f"host=h user=u password={SECRET} dbname=app", "host=h"),
        (f"host=h user=u password = '{SECRET}' dbname=app", "host=h"),
        (f"host=h password={SECRET} dangling", "host=h"),
        (f"postgresql://u:{SECRET}@[::1/app", "postgresql://u@"),
    ],
)
def test_redact_keeps_where_and_drops_the_password(url: str, kept: str) -> None:
    assert kept in redact(url)
    assert_hidden(redact(url))
    # A message quoting the URL, or just its password, is scrubbed of it.
    assert_hidden(scrub(f"cannot use {url}: bad password {SECRET}", url))
    assert MASK in scrub(f"bad password {SECRET}", url)


def test_a_percent_encoded_password_is_masked_encoded_and_decoded() -> None:
    password = f"{SECRET}@/?#%+"
    url = f"postgresql://u:{quote(password, safe='')}@h/app"
    assert redact(url) == "postgresql://u@h/app"
    text = scrub(f"{password} and {quote(password, safe='')}", url)
    assert text == f"{MASK} and {MASK}"


# ------------------------------------------------------------- App and Client


@pytest.mark.parametrize("url", UNREACHABLE)
def test_a_launch_that_cannot_connect_never_shows_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = durably.App(url, name="shop")
    assert "shop" in repr(app) and "127.0.0.1" in repr(app)
    with pytest.raises(durably.DatabaseUnavailable) as launch:
        app.launch()
    client = durably.Client(url)
    with pytest.raises(durably.DatabaseUnavailable) as listing:
        client.list_workflows()
    app.shutdown(grace=0)
    client.close()
    assert "cannot connect to PostgreSQL at" in str(launch.value)
    assert_hidden(app, client, launch.value, listing.value, caplog.text)


def test_an_unparseable_url_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (f"host=h password={SECRET} dangling", f"postgresql://u:{SECRET}@[::1/db"):
        app = durably.App(url)
        with pytest.raises(durably.ConfigurationError) as caught:
            app.launch()
        app.shutdown(grace=0)
        assert_hidden(app, caught.value, caplog.text)


@dataclass
class Role:
    name: str
    url: str  # postgresql://name:SECRET@...
    keywords: str  # host=... user=name password=SECRET ...


def as_role(pg_url: str, name: str, password: str) -> tuple[str, str]:
    """``pg_url`` (the test server's) connecting as ``name``: as a URL and as keywords."""
    parts = urlsplit(pg_url)
    netloc = f"{quote(name)}:{quote(password)}@{parts.netloc.rpartition('@')[2]}"
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    info.update(user=name, password=password)
    return urlunsplit(parts._replace(netloc=netloc)), psycopg.conninfo.make_conninfo(**info)


@pytest.fixture
def role(pg_url: str, schema: str) -> Iterator[Role]:
    """A role whose password is SECRET, allowed to create the test's schema (so that it
    migrates and owns it, as an application's owner role would)."""
    name = f"{schema}_owner"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        ident = sql.Identifier(name)
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(SECRET))
        )
        database = sql.Identifier(admin.info.dbname)
        admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(database, ident))
        try:
            yield Role(name, *as_role(pg_url, name, SECRET))
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
            admin.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            admin.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_a_role_that_may_not_log_in_is_refused_without_its_password(
    pg_url: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server answers and refuses (a NOLOGIN role: the same on every server, whatever
    its authentication); the refusal is shown, the password is not."""
    caplog.set_level(logging.DEBUG)
    name = f"{schema}_nologin"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        ident = sql.Identifier(name)
        admin.execute(
            sql.SQL("CREATE ROLE {} NOLOGIN PASSWORD {}").format(ident, sql.Literal(SECRET))
        )
        try:
            for url in as_role(pg_url, name, SECRET):
                app = durably.App(url, schema=schema)
                with pytest.raises(durably.DatabaseUnavailable) as caught:
                    app.launch()
                app.shutdown(grace=0)
                assert "not permitted to log in" in str(caught.value)
                assert_hidden(app, caught.value, caplog.text)
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_a_live_app_whose_connections_are_cut_logs_no_password(
    role: Role, pg_url: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection of the app is terminated under it: the outage is logged (with
    the driver's error) and survived, and no log line or repr holds the password."""
    caplog.set_level(logging.DEBUG)
    for url in (role.url, role.keywords):
        app = durably.App(url, schema=schema, poll_interval=0.2)

        @app.workflow(name="double")
        def double(x: int) -> int:
            return x * 2

        with app:
            assert double(2) == 4
            with psycopg.connect(pg_url, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE usename = %s",
                    (role.name,),
                ).fetchone()
            assert cut is not None and cut[0] > 0
            assert double.options(id=f"after-{len(url)}").start(3).result(timeout=60) == 6
            with durably.Client(url, schema=schema) as client:
                assert client.handle(f"after-{len(url)}").result(timeout=30) == 6
                assert_hidden(app, client)
        assert role.name in repr(app)
    assert "the database is unreachable" in caplog.text  # the driver's error was logged
    assert_hidden(caplog.text)


# ------------------------------------------------------------------------ the CLI


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.pop("DURABLY_DATABASE_URL", None)
    environ["PYTHONPATH"] = str(ROOT / "src")
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "durably.cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


COMMANDS = (
    ("migrate",),
    ("migrate", "--sql"),
    ("workflows", "list"),
    ("workflows", "show", "nothing-here"),
    ("queues",),
    ("schedules", "list"),
    ("gc", "--older-than", "1d"),
    ("cancel", "nothing-here"),
    ("doctor",),
    ("doctor", "--json"),
)


@pytest.mark.parametrize("url", UNREACHABLE)
def test_cli_commands_that_cannot_connect_never_show_the_password(url: str) -> None:
    for command in COMMANDS:
        done = run_cli(*command, "--database-url", url)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "cannot connect to PostgreSQL at" in done.stderr
        assert_hidden(done.stdout, done.stderr)
    done = run_cli("workflows", "list", env={"DURABLY_DATABASE_URL": url})
    assert done.returncode == 1 and "cannot connect" in done.stderr
    assert_hidden(done.stdout, done.stderr)
    # The demo names the database it connects to.
    done = run_cli("demo", "--database-url", url, "--schema", "durably_demo_secret")
    assert done.returncode == 1 and "[demo] connecting to " in done.stdout
    assert "127.0.0.1" in done.stdout and "cannot connect" in done.stderr
    assert_hidden(done.stdout, done.stderr)


def test_cli_commands_on_a_live_server_never_show_the_password(role: Role, schema: str) -> None:
    for url in (role.url, role.keywords):
        cli = Cli(url, schema)
        for command in (*COMMANDS, ("migrate", "--sql", "--grant", role.name)):
            done = cli.run(*command)
            assert done.returncode in (0, 1), (command, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, done.stderr
            assert_hidden(done.stdout, done.stderr)
        # The doctor also takes the URL as its argument.
        done = cli.run("doctor", url, "--schema", schema, database=False)
        assert done.returncode in (0, 1) and "PostgreSQL" in done.stdout, done.stderr
        assert_hidden(done.stdout, done.stderr)
    done = run_cli("workflows", "list", "--schema", schema, env={"DURABLY_DATABASE_URL": role.url})
    assert done.returncode == 0, done.stderr
    assert_hidden(done.stdout, done.stderr)


def test_the_worker_logs_no_password(
    role: Role, schema: str, tmp_path: Path, make_app: Callable[..., durably.App]
) -> None:
    """``durably worker`` at DEBUG, connected with the password, runs a queued workflow
    and stops: nothing it printed holds the password."""
    fleet = Fleet(role.url, schema, tmp_path)
    try:
        migrated = Cli(role.url, schema).run("migrate")  # the role owns the schema
        assert migrated.returncode == 0, migrated.stderr
        worker = fleet.start("--queue", "cli", "--log-level", "DEBUG")
        jobs = fleet.enqueuer(make_app)
        fleet.open("one")
        assert jobs.queues["cli"].enqueue(jobs.gated, "one").result(timeout=30)["key"] == "one"
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0, worker.output()
        assert_hidden("\n".join(worker.lines))
    finally:
        fleet.close()


def test_the_dashboard_banner_names_the_database_without_the_password(
    role: Role, schema: str
) -> None:
    assert Cli(role.url, schema).run("migrate").returncode == 0
    where = ("--database-url", role.url, "--schema", schema)
    process = subprocess.Popen(
        [sys.executable, "-m", "durably.cli", "dashboard", "--port", "0", *where],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:

        def banner() -> str | None:
            found = next((x for x in list(lines) if "durably dashboard of schema" in x), None)
            if found is None and process.poll() is not None:
                reader.join(timeout=5)
                raise AssertionError(f"the dashboard exited:\n{''.join(lines)}")
            return found

        assert f"{role.name}@" in wait_until(banner, what="the dashboard's banner")
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=5)
    assert_hidden("".join(lines))
