"""Least privilege under hostile names: an owner migrates, a worker's role does the work.

The schema's name carries a newline, quotes, a semicolon, a backslash and a statement
that would drop another schema; the role's name carries quotes and a statement too.
``durably migrate --sql --grant ROLE`` prints a script that, run as it stands, creates
the schema and grants the role exactly what a worker needs (and drops nothing); a worker
connected as the role then runs every kind of work durably has (steps with retries,
transactions, children, queues with their limits, delays and debouncing, events,
streams, messages, durable sleeps, schedules, cancel, resume, fork, retention, a
Client), and the role can change nothing of the schema: no DROP, ALTER, CREATE,
TRUNCATE, nor a write to the record of migrations, nor a call of the SQL API.
"""

from __future__ import annotations

import collections
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

import durably
from support import ROOT, Cli, wait_until

PASSWORD = "w0rker-pw"


@dataclass
class Setting:
    schema: str  # hostile
    role: str  # hostile
    canary: str  # a schema the hostile names try to drop
    url: str  # the test server, connecting as the role


@pytest.fixture
def hostile(pg_url: str) -> Iterator[Setting]:
    tag = uuid.uuid4().hex[:8]
    canary = f"c_{tag}"
    # After a newline, a statement: were the name ever put in a comment, it would run.
    schema = f"t_{tag}\nDROP SCHEMA {canary} CASCADE; --\"\\'ü"
    role = f'w_{tag}"; DROP SCHEMA {canary} CASCADE; --'
    assert len(schema.encode()) <= 63 and len(role.encode()) <= 63
    parts = urlsplit(pg_url)
    netloc = f"{quote(role, safe='')}:{PASSWORD}@{parts.netloc.rpartition('@')[2]}"
    url = urlunsplit(parts._replace(netloc=netloc))
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(canary)))
        admin.execute(sql.SQL("CREATE TABLE {}.alive (a int)").format(sql.Identifier(canary)))
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(PASSWORD)
            )
        )
        try:
            yield Setting(schema, role, canary, url)
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            for name in (schema, canary):
                admin.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def canary_alive(db: psycopg.Connection[Any], canary: str) -> bool:
    found = db.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{canary}.alive",)).fetchone()
    return bool(found and found[0])


def test_the_printed_script_migrates_and_grants_and_drops_nothing(
    pg_url: str, hostile: Setting
) -> None:
    owner = Cli(pg_url, hostile.schema)
    shown = owner.run("migrate", "--sql", "--grant", hostile.role)
    assert shown.returncode == 0, shown.stderr
    script = shown.stdout
    # The names are quoted identifiers in statements, and Python literals in comments.
    schema_ident = '"' + hostile.schema.replace('"', '""') + '"'
    role_ident = '"' + hostile.role.replace('"', '""') + '"'
    assert f"GRANT USAGE ON SCHEMA {schema_ident} TO {role_ident};" in script
    assert f"-- grants of role {hostile.role!r}" in script
    # What an operator would do with it: run it as it stands (one simple query).
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(script.encode())
        assert canary_alive(admin, hostile.canary)
        granted = admin.execute(
            "SELECT has_schema_privilege(%(r)s, %(s)s, 'USAGE'), "
            "has_schema_privilege(%(r)s, %(s)s, 'CREATE'), "
            "has_table_privilege(%(r)s, %(w)s, 'SELECT,INSERT,UPDATE,DELETE'), "
            "has_table_privilege(%(r)s, %(w)s, 'TRUNCATE'), "
            "has_table_privilege(%(r)s, %(m)s, 'INSERT')",
            {
                "r": hostile.role,
                "s": hostile.schema,
                "w": f"{schema_ident}.workflows",
                "m": f"{schema_ident}.migrations",
            },
        ).fetchone()
    assert granted == (True, False, True, False, False)
    # A table a later migration adds (made by the same owner) is the role's to use at once.
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE TABLE {}.later (a int)").format(sql.Identifier(hostile.schema))
        )
    with psycopg.connect(hostile.url, autocommit=True) as worker:
        later = sql.SQL("{}.later").format(sql.Identifier(hostile.schema))
        worker.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(later))
        assert worker.execute(sql.SQL("SELECT a FROM {}").format(later)).fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute(sql.SQL("DROP TABLE {}").format(later))
    again = owner.run("migrate")
    assert again.stdout == f"schema {hostile.schema} is up to date\n", again.stderr
    # Every command that reads or changes the schema names it safely too.
    for command in (("workflows", "list"), ("queues",), ("schedules", "list"), ("doctor",)):
        done = owner.run(*command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert owner.run("gc", "--older-than", "1d").returncode == 0
    for command in (("workflows", "show", "nothing-here"), ("cancel", "nothing-here")):
        assert owner.refused(*command).endswith(
            "no workflow with id 'nothing-here' exists [docs/errors.md#workflownotfound]"
        )
    with psycopg.connect(pg_url, autocommit=True) as admin:
        assert canary_alive(admin, hostile.canary)


def test_a_worker_role_runs_every_kind_of_work_and_can_change_nothing(
    pg_url: str, hostile: Setting
) -> None:
    done = Cli(pg_url, hostile.schema).run("migrate", "--grant", hostile.role)
    assert done.returncode == 0, done.stderr
    runs: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def ran(what: str) -> None:
        with lock:
            runs[what] += 1

    app = durably.App(hostile.url, schema=hostile.schema, park_after=0.0, poll_interval=0.2)

    @app.step(retries=2, backoff=1.0, interval=0.01)
    def flaky(x: int) -> int:
        ran("flaky")
        if runs["flaky"] == 1:
            raise RuntimeError("the first attempt fails")
        return x + 1

    @app.transaction()
    def in_transaction(conn: Any, x: int) -> int:
        ran("transaction")
        return int(conn.execute("SELECT %s::int * 10", (x,)).fetchone()[0])

    @app.workflow(name="child")
    def child(x: int) -> int:
        return x * 2

    @app.workflow(name="everything")
    def everything(x: int) -> dict[str, Any]:
        a = flaky(x)
        b = child(a)
        c = in_transaction(b)
        durably.set_event("stage", "halfway")
        durably.write_stream("numbers", 1)
        durably.write_stream("numbers", 2)
        durably.close_stream("numbers")
        durably.sleep(0.2)  # parked (park_after=0) and woken by the worker
        message = durably.recv("go", timeout=60)
        durably.set_event("stage", "done")
        return {"c": c, "message": message}

    @app.workflow(name="plain")
    def plain(tag: str) -> str:
        ran(f"plain {tag}")
        return tag

    @app.scheduled("* * * * * *", name="every_second")
    def every_second(scheduled_at: datetime) -> None:
        ran("tick")

    limited = app.queue("limited", concurrency=1, rate_limit=(100, 1.0), priority=True)
    later = app.queue("later")
    app.launch()
    try:
        # Steps, retries, a child, a transaction, events, streams, a sleep, a message.
        big = everything.options(id="big").start(1)
        assert app.get_event("big", "stage", timeout=30) in ("halfway", "done")
        assert list(app.read_stream("big", "numbers", timeout=30)) == [1, 2]
        app.send("big", "hello", topic="go", idempotency_key="once")
        app.send("big", "hello", topic="go", idempotency_key="once")  # deduplicated
        assert big.result(timeout=60) == {"c": 40, "message": "hello"}
        assert app.get_all_events("big") == {"stage": "done"}
        assert [s.kind for s in app.list_steps("big")][:2] == ["step", "child"]

        # Queues: limits, priority, deduplication, a delay brought forward, debouncing.
        handles = [plain.options(queue=limited.name, priority=p).start(f"p{p}") for p in (3, 1)]
        assert [h.result(timeout=30) for h in handles] == ["p3", "p1"]
        deduped = plain.options(queue="limited", dedup_key="k", id="dedup").start("d")
        assert deduped.result(timeout=30) == "d"
        delayed = plain.options(queue="later", delay=3600, id="delayed").start("late")
        assert app.set_delay("delayed", 0)
        assert delayed.result(timeout=30) == "late"
        debounced = later.debounce("key", 0.1, plain, "debounced")
        assert debounced.result(timeout=30) == "debounced"
        assert app.queue_stats()  # read by the role

        # Schedules: the declared one ticks; one made, paused and deleted at run time.
        wait_until(lambda: runs["tick"] >= 1, what="a schedule tick run by the role")
        app.create_schedule("made", plain, "0 0 1 1 *")
        app.pause_schedule("made")
        app.delete_schedule("made")

        # Cancel, resume and fork.
        waiting = everything.options(id="waiting").start(5)
        wait_until(lambda: app.get_event("waiting", "stage", timeout=0), what="halfway")
        app.cancel("waiting")
        assert waiting.status() is durably.Status.CANCELLED
        app.resume("waiting")
        app.send("waiting", "again", topic="go")
        assert waiting.result(timeout=60) == {"c": 120, "message": "again"}
        forked = app.fork("big", from_step=3)
        app.send(forked.id, "forked", topic="go")
        assert forked.result(timeout=60)["message"] == "forked"

        # Another process's Client, as the role.
        with durably.Client(hostile.url, schema=hostile.schema) as client:
            assert client.enqueue("limited", "plain", "from a client").result(timeout=30)
            assert client.handle("big").status() is durably.Status.SUCCESS

        # Retention: deleting finished workflows needs only DELETE.
        collected = app.gc(timedelta(microseconds=1))
        assert collected.workflows >= 1
        assert app.list_workflows(ids=["big"]) == []
    finally:
        app.shutdown(grace=5)

    with psycopg.connect(pg_url, autocommit=True) as admin:
        assert canary_alive(admin, hostile.canary)

    # What the role cannot do: change the schema, its tables, functions or sequences.
    schema = sql.Identifier(hostile.schema)
    refused = [
        sql.SQL("DROP SCHEMA {} CASCADE").format(schema),
        sql.SQL("ALTER SCHEMA {} RENAME TO sneaky").format(schema),
        sql.SQL("CREATE TABLE {}.sneaky (a int)").format(schema),
        sql.SQL("CREATE FUNCTION {}.sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'").format(
            schema
        ),
        sql.SQL("DROP TABLE {}.workflows").format(schema),
        sql.SQL("ALTER TABLE {}.workflows ADD COLUMN sneaky int").format(schema),
        sql.SQL("ALTER TABLE {}.operations DISABLE TRIGGER ALL").format(schema),
        sql.SQL("CREATE INDEX sneaky ON {}.workflows (name)").format(schema),
        sql.SQL("TRUNCATE {}.operations").format(schema),
        sql.SQL("COMMENT ON TABLE {}.workflows IS 'sneaky'").format(schema),
        sql.SQL("INSERT INTO {}.migrations (version, name) VALUES (999, 'x')").format(schema),
        sql.SQL("DELETE FROM {}.migrations").format(schema),
        sql.SQL("DROP FUNCTION {}.enqueue(text, text, jsonb, jsonb)").format(schema),
        sql.SQL("SELECT {}.enqueue('limited', 'plain', '[]')").format(schema),
        sql.SQL("SELECT {}.workflow_status('big')").format(schema),
    ]
    with psycopg.connect(hostile.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (hostile.role,)
        sequences = conn.execute(
            "SELECT format('%%I.%%I', schemaname, sequencename) FROM pg_sequences "
            "WHERE schemaname = %s",
            (hostile.schema,),
        ).fetchall()
        assert sequences
        refused += [sql.SQL("ALTER SEQUENCE {} RESTART").format(sql.SQL(s)) for (s,) in sequences]
        refused += [sql.SQL("DROP SEQUENCE {}").format(sql.SQL(s)) for (s,) in sequences]
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


# ------------------------------------------------------ names placed in SQL text


def test_no_sql_file_puts_a_name_in_a_comment() -> None:
    """A name (schema, role) placed in a comment would let a newline in it end the
    comment: the rest of the name would run as SQL. Names go only where quoted."""
    from durably.store import sqlfile

    store = Path(sqlfile.__file__).parent
    found = [
        f"{path.relative_to(store)}:{number}: {line.strip()}"
        for path in sorted(store.rglob("*.sql"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"--.*\{(schema|role)\}", line)
    ]
    assert not found, "names placed in comments:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("pct_%s", "'%'"),
        ("pct_%(workflow_id)s", "'%'"),
        ("x$sql_api$; DROP SCHEMA public CASCADE; $sql_api$", "'$sql_api$'"),
        ("x$$y", "'$$'"),
    ],
)
def test_schema_names_the_statements_cannot_carry_are_refused_before_connecting(
    pg_url: str, schema: str, says: str, db: psycopg.Connection[Any]
) -> None:
    for make in (durably.App, durably.Client):
        with pytest.raises(durably.ConfigurationError, match=re.escape(says)):
            make(pg_url, schema=schema)  # refused when made, not at the first call
    found = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
    assert found.fetchone() == (0,)
    assert (
        Cli(pg_url, schema)
        .refused("migrate")
        .endswith("choose a name without " + says + " [docs/errors.md#configurationerror]")
    )


def test_the_grants_docs_cli_md_shows_are_the_ones_granted() -> None:
    from durably.store.grant import grant_statements

    page = (ROOT / "docs" / "cli.md").read_text()
    shown = page.split("hand (the statements live in", 1)[1].split("```sql\n", 1)[1]
    shown_lines = shown.split("```", 1)[0].splitlines()
    granted = [
        line.replace('"', "") + ";"
        for statement in grant_statements("durably", "durably_worker")
        for line in statement.as_string(None).splitlines()
        if not line.startswith("--")
    ]
    assert shown_lines == granted
