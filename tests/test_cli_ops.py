"""The operations commands (``durably schedules ...``, ``migrate --grant``, ``doctor``),
each run as a real process against the test server: JSON parsed, tables read, bad input
one line on stderr that changes nothing; and what they rest on (a Client's trigger run
by a worker, a least-privileged role running a worker)."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

import durably
from support import Cli, wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------ schedules


@dataclass
class Scheduled:
    app: durably.App
    runs: collections.Counter[str]


@pytest.fixture
def scheduled(make_app: Callable[..., durably.App]) -> Scheduled:
    """A worker with two schedules that do not fire during a test (yearly, hourly in
    a range the tests backfill); it runs whatever ticks the commands hand over."""
    app = make_app()
    runs: collections.Counter[str] = collections.Counter()

    @app.scheduled("0 0 1 1 *", name="yearly")
    def yearly(scheduled_at: datetime) -> str:
        runs[scheduled_at.isoformat()] += 1
        return scheduled_at.isoformat()

    @app.scheduled("0 * * * *", name="hourly")
    def hourly(scheduled_at: datetime) -> str:
        runs[f"hourly {scheduled_at.isoformat()}"] += 1
        return scheduled_at.isoformat()

    app.launch()
    return Scheduled(app, runs)


def _statuses(db: psycopg.Connection[Any], prefix: str) -> dict[str, str]:
    rows = db.execute(
        "SELECT id, status FROM workflows WHERE id LIKE %s ORDER BY id", (prefix + "%",)
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def test_schedules_list_json_and_table(cli: Cli, scheduled: Scheduled) -> None:
    listed = cli.json("schedules", "list")
    assert [s["name"] for s in listed] == ["hourly", "yearly"]
    yearly = listed[1]
    assert yearly["workflow_name"] == "yearly" and yearly["cron"] == "0 0 1 1 *"
    assert yearly["timezone"] == "UTC" and yearly["paused"] is False
    assert yearly["catch_up"] is False and yearly["last_tick"] is None
    assert datetime.fromisoformat(yearly["next_tick"]).tzinfo is not None

    table = cli.run("schedules", "list")
    assert table.returncode == 0, table.stderr
    assert "2 schedule(s)" in table.stdout
    header = table.stdout.splitlines()[0].split()
    assert header[:6] == ["NAME", "WORKFLOW", "CRON", "TIMEZONE", "STATE", "CATCH-UP"]
    assert "0 0 1 1 *" in table.stdout and "active" in table.stdout


def test_pause_and_resume(cli: Cli, scheduled: Scheduled, db: psycopg.Connection[Any]) -> None:
    paused = cli.json("schedules", "pause", "yearly")
    assert paused["action"] == "pause" and paused["before"] == "active"
    assert paused["paused"] is True and paused["next_tick"] is None
    assert db.execute("SELECT paused FROM schedules WHERE name = 'yearly'").fetchone() == (True,)

    again = cli.run("schedules", "pause", "yearly")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "schedule yearly: still paused (pause changed nothing)"

    resumed = cli.run("schedules", "resume", "yearly")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("schedule yearly: paused -> active, next tick ")
    assert db.execute("SELECT paused FROM schedules WHERE name = 'yearly'").fetchone() == (False,)
    assert scheduled.app.get_schedule("yearly").paused is False


def test_trigger_is_run_by_a_worker_once(
    cli: Cli, scheduled: Scheduled, db: psycopg.Connection[Any]
) -> None:
    """The command's Client cannot run the tick: it hands it over, and the test's worker
    (which registers the workflow) runs it; the same tick again runs nothing more."""
    cli.json("schedules", "pause", "yearly")  # works on a paused schedule too
    done = cli.json("schedules", "trigger", "yearly", "--at", "2026-03-04T05:06:07.890+00:00")
    tick_id = "sched:yearly:2026-03-04T05:06:07Z"
    assert done["schedule"] == "yearly" and done["id"] == tick_id
    app = scheduled.app
    assert app.handle(tick_id).result(timeout=30) == "2026-03-04T05:06:07+00:00"
    assert scheduled.runs["2026-03-04T05:06:07+00:00"] == 1

    text = cli.run("schedules", "trigger", "yearly", "--at", "2026-03-04T05:06:07+00:00")
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == f"schedule yearly: tick {tick_id} (SUCCESS)"
    assert _statuses(db, "sched:yearly:") == {tick_id: "SUCCESS"}
    assert scheduled.runs["2026-03-04T05:06:07+00:00"] == 1


def test_trigger_waits_for_a_worker_that_knows_the_workflow(
    cli: Cli, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Triggered with no worker of the workflow alive, the tick waits; a worker that
    registers it later runs it."""
    declaring = make_app()

    @declaring.scheduled("0 0 1 1 *", name="later")
    def later(scheduled_at: datetime) -> str:
        return "ran"

    declaring.launch()
    declaring.shutdown(grace=5)  # the schedule is stored; nobody runs it now
    done = cli.json("schedules", "trigger", "later", "--at", "2030-01-01T00:00:00+00:00")
    tick_id = done["id"]
    assert done["status"] == "PENDING"
    assert _statuses(db, "sched:later:") == {tick_id: "PENDING"}

    worker = make_app()

    @worker.workflow(name="later")
    def later_again(scheduled_at: datetime) -> str:
        return f"ran {scheduled_at:%Y}"

    worker.launch()
    assert worker.handle(tick_id).result(timeout=30) == "ran 2030"


def test_backfill_runs_every_tick_once(
    cli: Cli, scheduled: Scheduled, db: psycopg.Connection[Any]
) -> None:
    done = cli.json(
        "schedules", "backfill", "hourly",
        "--start", "2025-06-01T10:00:00+00:00", "--end", "2025-06-01T15:00:00+00:00",
    )  # fmt: skip
    expected = [f"sched:hourly:2025-06-01T{hour}:00:00Z" for hour in range(10, 15)]
    assert done["ticks"] == 5 and done["ids"] == expected
    app = scheduled.app
    for tick_id in expected:
        app.handle(tick_id).result(timeout=30)
    wait_until(lambda: set(_statuses(db, "sched:hourly:").values()) == {"SUCCESS"})

    # Again, over a wider range: only the two new ticks run.
    text = cli.run(
        "schedules", "backfill", "hourly",
        "--start", "2025-06-01T09:00:00+00:00", "--end", "2025-06-01T16:00:00+00:00",
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("schedule hourly: 7 tick(s) from ")
    assert "sched:hourly:2025-06-01T09:00:00Z" in text.stdout
    for hour in (9, 15):
        app.handle(f"sched:hourly:2025-06-01T{hour:02d}:00:00Z").result(timeout=30)
    hourly_runs = {k: v for k, v in scheduled.runs.items() if k.startswith("hourly")}
    assert len(hourly_runs) == 7 and set(hourly_runs.values()) == {1}


def test_a_client_backfills_in_batches_with_progress(
    pg_url: str, schema: str, make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """The Client's own API: the schedule methods it shares with App, and a backfill of
    1,200 ticks started in batches, reporting progress after each (nobody runs them: the
    workflow's app is gone, so they wait)."""
    declaring = make_app()

    @declaring.scheduled("* * * * * *", name="secondly")
    def secondly(scheduled_at: datetime) -> None:
        pass

    declaring.launch()
    declaring.pause_schedule("secondly")
    declaring.shutdown(grace=5)
    seen: list[tuple[int, int]] = []
    with durably.Client(pg_url, schema=schema) as client:
        (info,) = client.list_schedules()
        assert info.name == "secondly" and info.paused
        start = datetime(2025, 1, 1, tzinfo=UTC)
        handles = client.backfill(
            "secondly", start, start + timedelta(seconds=1200), progress=lambda *p: seen.append(p)
        )
        assert seen == [(500, 1200), (1000, 1200), (1200, 1200)]
        assert handles[0].id == "sched:secondly:2025-01-01T00:00:00Z"
        assert handles[-1].id == "sched:secondly:2025-01-01T00:19:59Z"
        again = asyncio.run(
            client.backfill_async("secondly", start, start + timedelta(seconds=1200))
        )
        assert [h.id for h in again] == [h.id for h in handles]
        assert client.get_schedule("secondly").paused
    rows = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'PENDING' AND executor_id IS NULL) "
        "FROM workflows WHERE name = 'secondly'"
    ).fetchone()
    assert rows == (1200, 1200)


def test_schedule_commands_refuse_bad_input_and_change_nothing(
    cli: Cli, scheduled: Scheduled, db: psycopg.Connection[Any]
) -> None:
    def state() -> Any:
        return (
            db.execute("SELECT * FROM schedules ORDER BY name").fetchall(),
            db.execute("SELECT id FROM workflows ORDER BY id").fetchall(),
        )

    before = state()
    for command in ("pause", "resume", "trigger"):
        line = cli.refused("schedules", command, "nope")
        assert line == (
            f"durably schedules {command}: no schedule named 'nope' exists "
            "[docs/errors.md#schedulenotfound]"
        )
    line = cli.refused(
        "schedules", "backfill", "nope", "--start", "2025-01-01", "--end", "2025-01-02"
    )
    assert line == (
        "durably schedules backfill: no schedule named 'nope' exists "
        "[docs/errors.md#schedulenotfound]"
    )
    too_many = cli.refused(
        "schedules", "backfill", "hourly", "--start", "2020-01-01", "--end", "2025-01-01"
    )
    assert "more than 10000 ticks" in too_many
    # Bad times: usage errors, refused before connecting.
    line = cli.refused("schedules", "trigger", "yearly", "--at", "tomorrow", code=2)
    assert line.startswith("durably schedules trigger: Invalid value for '--at': ")
    line = cli.refused(
        "schedules", "backfill", "hourly", "--start", "2025-13-01", "--end", "2025-01-02",
        code=2,
    )  # fmt: skip
    assert "'--start'" in line
    line = cli.refused(
        "schedules", "backfill", "hourly", "--start", "2025-01-02", "--end", "2025-01-01",
        code=2,
    )  # fmt: skip
    assert "--end" in line and "before --start" in line
    assert cli.refused("schedules", "pause", code=2).startswith("durably schedules pause: ")
    assert state() == before


def test_schedule_commands_have_help(cli: Cli) -> None:
    for command in ("list", "pause", "resume", "trigger", "backfill"):
        done = cli.run("schedules", command, "--help", database=False)
        assert done.returncode == 0 and "--database-url" in done.stdout, done.stderr


# ------------------------------------------------------------------ least privilege


@dataclass
class Role:
    name: str
    url: str


@pytest.fixture
def worker_role(pg_url: str, schema: str) -> Iterator[Role]:
    """A login role with a password and no rights on anything of the test's schema."""
    name = f"{schema}_worker"
    password = "s3cret-pw"
    admin = psycopg.connect(pg_url, autocommit=True)
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)
        )
    )
    parts = urlsplit(pg_url)
    netloc = f"{quote(name)}:{quote(password)}@{parts.netloc.rpartition('@')[2]}"
    try:
        yield Role(name, urlunsplit(parts._replace(netloc=netloc)))
    finally:
        # The role's connections first (a worker shut down has closed them already).
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        admin.close()


def test_migrate_grant_lets_a_worker_run_as_a_role_that_cannot_change_the_schema(
    cli: Cli, worker_role: Role, schema: str, db: psycopg.Connection[Any]
) -> None:
    shown = cli.run("migrate", "--sql", "--grant", worker_role.name)
    assert shown.returncode == 0, shown.stderr
    quoted = f'"{worker_role.name}"'
    assert f'GRANT USAGE ON SCHEMA "{schema}" TO {quoted};' in shown.stdout
    assert f"-- grants of role {worker_role.name!r}" in shown.stdout
    done = cli.run("migrate", "--grant", worker_role.name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        done.stdout.splitlines()[0],
        f"role {worker_role.name}: granted what a worker needs on schema {schema}",
    ]
    assert done.stdout.startswith(f"schema {schema}: applied 0001_core.sql")
    # Up to date now: the grants alone, whose text is what migrate ran.
    again = cli.run("migrate", "--sql", "--grant", worker_role.name)
    assert "-- 0001_core.sql" not in again.stdout and "GRANT SELECT, INSERT" in again.stdout

    # A worker connected as the role: a step, a queue, a durable sleep, a schedule tick.
    runs: collections.Counter[str] = collections.Counter()
    app = durably.App(worker_role.url, schema=schema, park_after=0.0, poll_interval=0.2)
    try:

        @app.step()
        def add(a: int, b: int) -> int:
            runs["add"] += 1
            return a + b

        @app.workflow(name="summer")
        def summer(a: int) -> int:
            total = add(a, 1)
            durably.sleep(0.2)  # parks (park_after=0) and is woken by the worker
            return add(total, 1)

        @app.scheduled("* * * * * *", name="every_second")
        def every_second(scheduled_at: datetime) -> None:
            runs["tick"] += 1

        @app.workflow(name="listener")
        def listener() -> Any:
            return durably.recv("go", timeout=60)

        jobs = app.queue("jobs", concurrency=2)
        app.launch()
        assert summer(1) == 3
        assert jobs.enqueue(summer, 10).result(timeout=30) == 12
        wait_until(lambda: runs["tick"] >= 1, what="a schedule tick run by the role")
        waiting = listener.start()
        app.send(waiting.id, "hello", topic="go")  # a message ID: a sequence's next value
        assert waiting.result(timeout=30) == "hello"
        # The worker's connections are the role's.
        users = db.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
            "AND usename LIKE %s",
            (f"{schema}%",),
        ).fetchall()
        assert users == [(worker_role.name,)]
    finally:
        app.shutdown(grace=5)
    assert runs["add"] == 4

    # What the role cannot do: change the schema in any way.
    with psycopg.connect(worker_role.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (worker_role.name,)
        for statement in (
            sql.SQL("DROP TABLE {}.workflows").format(sql.Identifier(schema)),
            sql.SQL("ALTER TABLE {}.workflows ADD COLUMN sneaky int").format(
                sql.Identifier(schema)
            ),
            sql.SQL("CREATE TABLE {}.sneaky (a int)").format(sql.Identifier(schema)),
            sql.SQL("TRUNCATE {}.operations").format(sql.Identifier(schema)),
            sql.SQL("INSERT INTO {}.migrations (version, name) VALUES (999, 'x')").format(
                sql.Identifier(schema)
            ),
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_migrate_grant_refuses_an_unknown_role(
    cli: Cli, schema: str, db: psycopg.Connection[Any]
) -> None:
    for args in (("migrate", "--grant"), ("migrate", "--sql", "--grant")):
        line = cli.refused(*args, f"{schema}_nobody")
        assert line == (
            f"durably migrate: role '{schema}_nobody' does not exist; create it first (CREATE "
            f"ROLE ... LOGIN PASSWORD ...), then run migrate --grant again "
            "[docs/errors.md#configurationerror]"
        )
    found = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
    assert found.fetchone() == (0,)  # nothing was migrated either


def test_a_role_that_may_not_migrate_is_told_to_run_migrate(
    worker_role: Role, schema: str, db: psycopg.Connection[Any]
) -> None:
    app = durably.App(worker_role.url, schema=schema)
    try:
        with pytest.raises(durably.ConfigurationError, match="run `durably migrate` as its owner"):
            app.launch()
    finally:
        app.shutdown(grace=0)
    found = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
    assert found.fetchone() == (0,)


# ------------------------------------------------------------------------------ doctor

# The checks of the server's own settings: on the embedded server every one is ok.
SETTING_CHECKS = {
    "server_version", "io_method", "io_concurrency", "synchronous_commit", "wal_level",
    "max_wal_size", "checkpoint_timeout", "shared_buffers",
}  # fmt: skip


def _by_check(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for finding in report["findings"]:
        assert finding["level"] in ("ok", "warn", "fail")
        assert finding["reason"] and "\n" not in finding["reason"]
        assert (finding["fix"] is None) == (finding["level"] == "ok"), finding
        found[finding["check"]].append(finding)
    return found


@pytest.mark.embedded_server  # its settings are the embedded PostgreSQL 18's own
def test_doctor_finds_the_embedded_server_fit(
    cli: Cli, app: durably.App, schema: str, db: psycopg.Connection[Any]
) -> None:
    @app.workflow(name="noop")
    def noop() -> int:
        return 1

    assert noop() == 1
    # The heartbeat records the worker's clock beside the database's.
    row = db.execute(
        "SELECT abs(date_part('epoch', worker_clock - heartbeat_at)) FROM executors"
    ).fetchone()
    assert row is not None and row[0] is not None and row[0] < 1.0

    done = cli.run("doctor", "--json", "--session-age", "3600")
    assert done.returncode == 0, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    found = _by_check(report)
    assert report["schema"] == schema and report["server_version"].startswith("18")
    assert report["summary"]["fail"] == 0
    assert set(found) >= SETTING_CHECKS
    for check in SETTING_CHECKS:
        assert [f["level"] for f in found[check]] == ["ok"], found[check]
    (io,) = found["io_method"]
    assert "io_workers = 6" in io["reason"]
    assert {f["subject"] for f in found["vacuum"]} >= {
        f"{schema}.workflows",
        f"{schema}.operations",
    }
    assert [f["level"] for f in found["vacuum"]] == ["ok"] * len(found["vacuum"])
    for check in ("schema_version", "indexes", "connections", "clock_skew"):
        assert [f["level"] for f in found[check]] == ["ok"], found[check]
    assert "1 live worker(s)" in found["clock_skew"][0]["reason"]
    assert "1 live in the schema" in found["connections"][0]["reason"]

    table = cli.run("doctor", "--session-age", "3600")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["LEVEL", "CHECK", "REASON", "FIX"]
    assert table.stdout.rstrip().endswith(", 0 fail")


def test_doctor_fails_a_mis_set_schema_and_warns_of_an_idle_transaction(
    cli: Cli, app: durably.App, schema: str, pg_url: str, db: psycopg.Connection[Any]
) -> None:
    db.execute("ALTER TABLE workflows SET (autovacuum_enabled = false)")
    db.execute("DROP INDEX workflows_parked")
    # A worker whose clock runs 5 s ahead of the database's.
    db.execute(
        "INSERT INTO executors (id, hostname, pid, lease_seconds, worker_clock) "
        "VALUES ('fast-clock', 'elsewhere', 1, 3600, now() + interval '5 seconds')"
    )
    idle = psycopg.connect(pg_url)  # not autocommit: the SELECT opens a transaction
    try:
        idle.execute("SELECT 1")
        pid = idle.info.backend_pid

        def idle_for_a_while() -> bool:
            row = db.execute(
                "SELECT state = 'idle in transaction' AND xact_start < clock_timestamp() "
                "- interval '1 second' FROM pg_stat_activity WHERE pid = %s",
                (pid,),
            ).fetchone()
            return bool(row and row[0])

        wait_until(idle_for_a_while, what="the session idle in its transaction for 1 s")
        done = cli.run("doctor", "--json", "--session-age", "1")
    finally:
        idle.close()
    assert done.returncode == 1, (done.stdout, done.stderr)
    found = _by_check(json.loads(done.stdout))

    (off,) = [f for f in found["autovacuum"] if f["level"] == "fail"]
    assert off["subject"] == f"{schema}.workflows"
    assert f"autovacuum is off for table {schema}.workflows" in off["reason"]
    assert off["fix"] == f"ALTER TABLE {schema}.workflows RESET (autovacuum_enabled)"

    (held,) = [f for f in found["sessions"] if f["subject"] == f"pid {pid}"]
    assert held["level"] == "warn" and "idle in a transaction" in held["reason"]
    assert f"pg_terminate_backend({pid})" in held["fix"]
    assert "idle_in_transaction_session_timeout" in held["fix"]

    (missing,) = found["indexes"]
    assert missing["level"] == "fail" and "index workflows_parked of table" in missing["reason"]
    assert "0002_waits.sql" in missing["fix"]

    (skew,) = found["clock_skew"]
    assert (
        skew["level"] == "warn"
        and "the furthest, fast-clock on elsewhere, is +5." in skew["reason"]
    )

    # The fixes it gives, applied, clear the failures.
    db.execute(off["fix"])
    assert db.execute(
        "SELECT reloptions IS NULL OR NOT reloptions @> '{autovacuum_enabled=false}' "
        "FROM pg_class WHERE oid = 'workflows'::regclass"
    ).fetchone() == (True,)


def test_doctor_plans_connections_and_checks_the_schema(cli: Cli, schema: str) -> None:
    missing = cli.run("doctor", "--json")
    assert missing.returncode == 1
    found = _by_check(json.loads(missing.stdout))
    (version,) = found["schema_version"]
    assert version["level"] == "fail" and version["reason"] == f"schema {schema} does not exist"
    assert version["fix"] == f"durably migrate --schema {schema}"

    crowded = cli.run("doctor", "--json", "--workers", "10", "--pool-size", "30")
    (connections,) = _by_check(json.loads(crowded.stdout))["connections"]
    assert connections["level"] == "fail"
    assert "10 worker(s) (planned) x 30 connections = 300 of 197 available" in connections["reason"]
    assert "max_connections" in connections["fix"]

    # The URL as an argument, as in `durably doctor URL`.
    positional = cli.run("doctor", cli.pg_url, "--schema", schema, "--json", database=False)
    assert positional.returncode == 1 and json.loads(positional.stdout)["schema"] == schema
    assert "--workers" in cli.refused("doctor", "--workers", "0", code=2)
    assert "--session-age" in cli.refused("doctor", "--session-age", "-1", code=2)
