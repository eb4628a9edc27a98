"""The operator commands (``durably workflows list/show``, ``cancel``, ``resume``, ``fork``,
``migrate``), each run as a real process against the test server: their JSON is parsed,
their tables name the workflows, and bad input is one line on stderr that changes nothing."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from durably.store.upgrade import pending_sql
from support import Cli, wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(90)


@dataclass
class Made:
    app: durably.App
    runs: collections.Counter[str]
    ok: str
    failed: str
    parked: str


@pytest.fixture
def made(make_app: Callable[..., durably.App], db: psycopg.Connection[Any]) -> Made:
    """A finished, a failed and a parked workflow, on an app that keeps running (so a
    fork or a resume is run by it)."""
    app = make_app()
    runs: collections.Counter[str] = collections.Counter()

    @app.step(name="double")
    def double(x: int) -> int:
        runs["double"] += 1
        return 2 * x

    @app.step(name="explode")
    def explode(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.workflow(name="adder")
    def adder(x: int) -> dict[str, int]:
        first = double(x)
        runs["adder"] += 1
        return {"total": first + double(first)}

    @app.workflow(name="breaker")
    def breaker(x: int) -> int:
        return explode(double(x))

    @app.workflow(name="waiter")
    def waiter() -> Any:
        return durably.recv("go", timeout=3600)

    app.launch()
    assert adder.options(id="wf-ok").start(3).result(timeout=20) == {"total": 18}
    failed = breaker.options(id="wf-failed").start(5)
    with pytest.raises(ValueError, match="boom 10"):
        failed.result(timeout=20)
    waiter.options(id="wf-parked").start()

    def waiting() -> bool:
        row = db.execute("SELECT wait_step FROM workflows WHERE id = 'wf-parked'").fetchone()
        return row is not None and row[0] is not None

    wait_until(waiting, what="wf-parked waiting")
    return Made(app, runs, "wf-ok", "wf-failed", "wf-parked")


def test_list_filters_json_and_table(cli: Cli, made: Made) -> None:
    listed = cli.json("workflows", "list")
    # Newest first, every workflow made.
    assert [w["id"] for w in listed] == ["wf-parked", "wf-failed", "wf-ok"]
    by_id = {w["id"]: w for w in listed}
    assert by_id["wf-ok"]["status"] == "SUCCESS" and by_id["wf-ok"]["name"] == "adder"
    assert by_id["wf-failed"]["status"] == "ERROR"
    assert by_id["wf-parked"]["status"] == "PENDING"
    assert by_id["wf-ok"]["served"] is True  # the test's app is live and registers it
    assert datetime.fromisoformat(by_id["wf-ok"]["created_at"]).tzinfo is not None

    some = cli.json("workflows", "list", "--status", "error", "--status", "SUCCESS", "--limit", "1")
    assert [w["id"] for w in some] == ["wf-failed"]
    assert cli.json("workflows", "list", "--name", "adder") == [by_id["wf-ok"]]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert cli.json("workflows", "list", "--created-after", later) == []
    paged = cli.json("workflows", "list", "--created-before", later, "--offset", "1")
    assert [w["id"] for w in paged] == ["wf-failed", "wf-ok"]

    table = cli.run("workflows", "list")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header == [
        "ID", "NAME", "STATUS", "QUEUE", "CREATED", "UPDATED", "SERVED", "VERSION"
    ]  # fmt: skip
    for workflow_id in ("wf-ok", "wf-failed", "wf-parked"):
        assert workflow_id in table.stdout
    assert "3 workflow(s)" in table.stdout


def test_show_gives_outcome_error_and_steps(cli: Cli, made: Made) -> None:
    ok = cli.json("workflows", "show", "wf-ok")
    assert ok["status"] == "SUCCESS" and ok["output"] == {"total": 18}
    assert ok["error"] is None
    assert [(s["step"], s["kind"], s["name"], s["output"]) for s in ok["steps"]] == [
        (1, "step", "double", 6),
        (2, "step", "double", 12),
    ]
    assert all(s["duration_seconds"] >= 0 for s in ok["steps"])

    failed = cli.json("workflows", "show", "wf-failed")
    assert failed["status"] == "ERROR"
    assert failed["error"]["type"] == "ValueError"
    assert failed["error"]["message"] == "boom 10"
    assert "explode" in failed["error"]["traceback"]  # the recorded traceback is shown
    last = failed["steps"][-1]
    assert last["name"] == "explode" and last["error"]["message"] == "boom 10"

    text = cli.run("workflows", "show", "wf-failed")
    assert text.returncode == 0, text.stderr
    assert "status:      ERROR" in text.stdout
    assert "ValueError: boom 10" in text.stdout
    assert "Traceback" in text.stdout and "explode" in text.stdout


def test_cancel_resume_and_fork(cli: Cli, made: Made) -> None:
    app = made.app
    cancelled = cli.json("cancel", "wf-parked", "--children")
    assert cancelled == {
        "id": "wf-parked",
        "action": "cancel",
        "before": "PENDING",
        "after": "CANCELLED",
    }
    assert app.handle("wf-parked").status() is durably.Status.CANCELLED

    resumed = cli.run("resume", "wf-parked")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "wf-parked: CANCELLED -> PENDING"
    app.send("wf-parked", "went", topic="go")
    assert app.handle("wf-parked").result(timeout=20) == "went"

    before = made.runs["double"]
    forked = cli.json("fork", "wf-ok", "--from-step", "2")
    assert forked["forked_from"] == "wf-ok" and forked["copied_steps"] == 1
    new_id = forked["id"]
    assert new_id != "wf-ok"
    assert app.handle(new_id).result(timeout=20) == {"total": 18}
    assert made.runs["double"] == before + 1  # step 1 copied, only step 2 ran again
    (info,) = app.list_workflows(ids=[new_id])
    assert info.forked_from == "wf-ok"


def test_bad_input_is_one_line_and_changes_nothing(cli: Cli, made: Made) -> None:
    app = made.app
    before = [(w.id, w.status) for w in app.list_workflows()]

    line = cli.refused("fork", "wf-ok", "--from-step", "3")
    assert line == (
        "durably fork: --from-step 3 is beyond the last step of 'wf-ok': its last "
        "recorded step is 2; use 1 to 2"
    )
    line = cli.refused("cancel", "no-such-id")
    assert line == (
        "durably cancel: no workflow with id 'no-such-id' exists [docs/errors.md#workflownotfound]"
    )
    assert "no workflow with id 'nope'" in cli.refused("workflows", "show", "nope")
    # Refused before connecting (exit code 2: bad usage).
    line = cli.refused("workflows", "list", "--created-after", "yesterday", code=2, database=False)
    assert line.startswith("durably workflows list: Invalid value for '--created-after': ")
    assert "ISO 8601" in line and "'yesterday'" in line
    line = cli.refused("fork", "wf-ok", "--from-step", "0", code=2, database=False)
    assert "--from-step" in line

    assert [(w.id, w.status) for w in app.list_workflows()] == before


def test_migrate_sql_applied_by_hand_and_migrate(
    cli: Cli, pg_url: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    def exists(name: str) -> bool:
        row = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
        return row is not None and row[0] == 1

    shown = cli.run("migrate", "--sql")
    assert shown.returncode == 0, shown.stderr
    assert "CREATE SCHEMA IF NOT EXISTS" in shown.stdout
    assert "-- 0001_core.sql" in shown.stdout
    assert not exists(schema)  # --sql runs nothing
    # What it prints is what migrate would do: applied by hand, the schema is up to date.
    db.execute(shown.stdout.encode())
    assert exists(schema)
    assert pending_sql(pg_url, schema) == []
    again = cli.run("migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"schema {schema} is up to date\n"

    other = f"{schema}_m"
    try:
        done = Cli(pg_url, other).run("migrate")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"schema {other}: applied 0001_core.sql, 0002_waits.sql")
        assert exists(other) and pending_sql(pg_url, other) == []
    finally:
        db.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(other)
            )
        )


def test_gc_deletes_old_finished_work_and_refuses_a_bad_duration(
    cli: Cli, made: Made, db: psycopg.Connection[Any]
) -> None:
    assert "older-than" in cli.refused("gc", "--older-than", "a month", code=2)
    assert "older-than" in cli.refused("gc", "--older-than", "0d", code=2)
    assert cli.json("gc", "--older-than", "1d") == {"workflows": 0, "executors": 0}
    db.execute("UPDATE workflows SET completed_at = now() - interval '2 days' WHERE id = 'wf-ok'")
    assert cli.json("gc", "--older-than", "1d")["workflows"] == 1
    done = cli.run("gc", "--older-than", "1d")
    assert done.returncode == 0 and "deleted 0 workflow(s)" in done.stdout
    ids = {w["id"] for w in cli.json("workflows", "list")}
    assert "wf-ok" not in ids and {"wf-failed", "wf-parked"} <= ids
    db.execute(
        "UPDATE workflows SET completed_at = now() - interval '2 days' WHERE id = 'wf-failed'"
    )
    assert cli.json("gc", "--older-than", "1d", "--status", "SUCCESS")["workflows"] == 0
    assert "status" in cli.refused("gc", "--older-than", "1d", "--status", "PENDING", code=2)
    assert cli.json("gc", "--older-than", "1d", "--status", "error")["workflows"] == 1


def test_a_schema_that_is_not_there_is_named_and_not_created(
    pg_url: str, db: psycopg.Connection[Any]
) -> None:
    typo = Cli(pg_url, "durably_no_such_schema")
    for command in (("workflows", "list"), ("gc", "--older-than", "1d"), ("cancel", "x")):
        line = typo.refused(*command)
        assert "'durably_no_such_schema' has no durably tables" in line and "--schema" in line
    row = db.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'durably_no_such_schema'"
    ).fetchone()
    assert row == (0,)


def test_show_counts_the_attempts_of_each_step(
    cli: Cli, make_app: Callable[..., durably.App]
) -> None:
    app = make_app()
    tries: collections.Counter[str] = collections.Counter()

    @app.step(retries=3, interval=0.01)
    def flaky() -> str:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise ConnectionError("try again")
        return "ok"

    @app.step(retries=1, interval=0.01)
    def hopeless() -> None:
        raise ValueError("never")

    @app.step
    def plain() -> int:
        return 1

    @app.workflow(name="attempted")
    def attempted() -> str:
        plain()
        flaky()
        with contextlib.suppress(durably.StepRetriesExceeded):
            hopeless()
        return "done"

    with app:
        assert attempted.options(id="wf-attempts")() == "done"
        assert [s.attempts for s in app.list_steps("wf-attempts")] == [1, 3, 2]
    shown = cli.json("workflows", "show", "wf-attempts")
    assert [step["attempts"] for step in shown["steps"]] == [1, 3, 2]
    table = cli.run("workflows", "show", "wf-attempts")
    assert table.returncode == 0 and "ATTEMPTS" in table.stdout
