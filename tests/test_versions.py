"""Code versions: a workflow records the application version that started it; a worker
recovers only work of the versions it runs; nothing is stranded silently; work is moved
to another version only on purpose (``set_version``, ``durably workflows set-version``).

The crash test kills real processes: a v1 process dies mid-step, a v2 worker leaves its
work alone (and says so), a v1 worker recovers it, and once moved to v2 the v2 worker
does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durably
from durably.errors import ConfigurationError, InvalidArgument
from queueprocs.jobs import effect_lines
from queueprocs.util import ROOT, TESTS, Fleet, statuses
from support import wait_until

pytestmark = pytest.mark.timeout(180)

LEASE = 1.0  # short: a killed process's work is free for others within a second or two


def run_cli(pg_url: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    env.pop("DURABLY_DATABASE_URL", None)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "durably.cli", *args, "--database-url", pg_url, "--schema", schema],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli_json(pg_url: str, schema: str, *args: str) -> Any:
    done = run_cli(pg_url, schema, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli_refused(pg_url: str, schema: str, *args: str, code: int = 1) -> str:
    done = run_cli(pg_url, schema, *args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip()


def owners(db: psycopg.Connection[Any], ids: list[str]) -> dict[str, tuple[Any, ...]]:
    rows = db.execute(
        "SELECT id, executor_id, epoch, app_version, status FROM workflows WHERE id = ANY(%s)",
        (ids,),
    )
    return {row[0]: row[1:] for row in rows.fetchall()}


def lease_over(db: psycopg.Connection[Any], executor_id: str) -> bool:
    row = db.execute(
        "SELECT heartbeat_at + make_interval(secs => lease_seconds) < now() FROM executors "
        "WHERE id = %s",
        (executor_id,),
    ).fetchone()
    return row is None or bool(row[0])


def beats_past(db: psycopg.Connection[Any], executor_id: str, seconds: float) -> bool:
    """Whether the executor has been beating for ``seconds`` since it registered (long
    enough for its takeover rounds and a slow sweep to have run)."""
    row = db.execute(
        "SELECT heartbeat_at - started_at >= make_interval(secs => %s) FROM executors "
        "WHERE id = %s",
        (seconds, executor_id),
    ).fetchone()
    return row is not None and bool(row[0])


# ------------------------------------------------------------------ the crash test


def test_recovery_follows_the_version_and_set_version_moves_work(
    fleet: Fleet,
    db: psycopg.Connection[Any],
    pg_url: str,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    make_app: Callable[..., durably.App],
) -> None:
    tag = uuid.uuid4().hex[:6]
    v1, v2 = f"v1-{tag}", f"v2-{tag}"
    ids = ["A", "B"]

    # A v1 process starts A and B directly; both steps run; it is SIGKILLed mid-step.
    env = fleet.env(executor_id="p1", lease=LEASE)
    env["DURABLY_APP_VERSION"] = v1
    starter = subprocess.Popen(
        [sys.executable, str(TESTS / "versionprocs" / "starter.py"), *ids],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert starter.stdout is not None
        line = starter.stdout.readline()
        assert line.startswith("started A B as " + v1), line + (starter.stdout.read() or "")
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait(timeout=10)
    assert owners(db, ids) == {k: ("p1", 1, v1, "PENDING") for k in ids}
    wait_until(lambda: lease_over(db, "p1"), what="p1's lease to end")

    # A v2 worker does not recover them, and says why, naming the version and the way out.
    monkeypatch.setenv("DURABLY_APP_VERSION", v2)
    w2 = fleet.start(executor_id="w2", lease=LEASE)
    warning = w2.wait_for(f"of application version {v1!r} wait")
    assert "2 unfinished workflow(s)" in warning, warning
    assert f"durably workflows set-version --from {v1} --to {v2}" in warning, warning
    # Long enough for several takeover rounds and a slow sweep (4 leases at most).
    wait_until(lambda: beats_past(db, "w2", 5 * LEASE), what="w2 beating for five leases")
    assert owners(db, ids) == {k: ("p1", 1, v1, "PENDING") for k in ids}
    assert not [e for e in effect_lines(fleet.effects) if e[2] == w2.pid]

    # Listings show them unserved, by version; the CLI filters by version too.
    client = durably.Client(pg_url, schema=schema)
    try:
        found = client.list_workflows(app_version=v1)
        assert sorted(i.id for i in found) == ids
        assert all(i.served is False and i.app_version == v1 for i in found), found
        assert client.list_workflows(app_version=v2) == []
    finally:
        client.close()
    listed = cli_json(pg_url, schema, "workflows", "list", "--version", v1)
    assert sorted(w["id"] for w in listed) == ids
    assert {(w["app_version"], w["served"]) for w in listed} == {(v1, False)}
    assert cli_json(pg_url, schema, "workflows", "list", "--version", v2) == []
    shown = run_cli(pg_url, schema, "workflows", "show", "A")
    assert shown.returncode == 0, shown.stderr
    assert f"version:     {v1}" in shown.stdout, shown.stdout

    # A v1 worker recovers both; A finishes there; then it is killed while B waits.
    monkeypatch.setenv("DURABLY_APP_VERSION", v1)
    w1 = fleet.start(executor_id="w1", lease=LEASE)
    wait_until(
        lambda: {("start", k, w1.pid) for k in ids} <= set(effect_lines(fleet.effects)),
        what="w1 running both steps",
    )
    fleet.open("A")
    wait_until(lambda: statuses(db, ["A"]) == {"A": "SUCCESS"}, what="A finished on w1")
    w1.kill()
    wait_until(lambda: lease_over(db, "w1"), what="w1's lease to end")
    wait_until(lambda: beats_past(db, "w2", 10 * LEASE), what="w2 beating on")
    assert owners(db, ["B"]) == {"B": ("w1", 2, v1, "PENDING")}

    # Moved to v2 on purpose (only B: A is finished), the v2 worker recovers B.
    moved = cli_json(pg_url, schema, "workflows", "set-version", "--from", v1, "--to", v2)
    assert moved == {"moved": 1, "from": v1, "to": v2}
    wait_until(lambda: ("start", "B", w2.pid) in effect_lines(fleet.effects), what="w2 running B")
    fleet.open("B")
    wait_until(lambda: statuses(db, ["B"]) == {"B": "SUCCESS"}, what="B finished on w2")
    assert owners(db, ids) == {"A": ("w1", 2, v1, "SUCCESS"), "B": ("w2", 3, v2, "SUCCESS")}
    ran = effect_lines(fleet.effects)
    assert [pid for what, key, pid in ran if what == "end" and key == "A"] == [w1.pid]
    assert [pid for what, key, pid in ran if what == "end" and key == "B"] == [w2.pid]


# ------------------------------------------------------------------ the code hash

CODE = """
import durably

app = durably.App("postgresql://localhost/unused", schema="x")


@app.step()
def fetch(n: int) -> int:
    return n * {step_factor}


@app.workflow()
def flow(n: int) -> int:
    return fetch(n) + {workflow_offset}
"""


def code_hash(path: Path) -> str:
    env = dict(os.environ)
    env.pop("DURABLY_APP_VERSION", None)
    env.pop("DURABLY_RECOVER_VERSIONS", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(
        [sys.executable, str(TESTS / "versionprocs" / "hashes.py"), str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_the_code_hash_is_stable_and_follows_workflow_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DURABLY_APP_VERSION", raising=False)
    path = tmp_path / "code.py"
    path.write_text(CODE.format(step_factor=2, workflow_offset=1))
    first, second = code_hash(path), code_hash(path)
    assert first == second and first.startswith("code-") and len(first) == 21, (first, second)

    path.write_text(CODE.format(step_factor=3, workflow_offset=1))
    assert code_hash(path) == first  # a step body is never replayed: same version

    path.write_text(CODE.format(step_factor=2, workflow_offset=5))
    changed = code_hash(path)
    assert changed != first and changed.startswith("code-")

    # An explicit version wins, given or from the environment.
    assert durably.App("postgresql://localhost/unused", app_version="2024-06-01").app_version == (
        "2024-06-01"
    )
    monkeypatch.setenv("DURABLY_APP_VERSION", "from-env")
    assert durably.App("postgresql://localhost/unused").app_version == "from-env"


# ------------------------------------------------------------------ queues and waits


def test_queued_work_runs_on_any_version_unless_pinned(
    make_app: Callable[..., durably.App], pg_url: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    tag = uuid.uuid4().hex[:6]
    va, vb = f"a-{tag}", f"b-{tag}"
    app = make_app(app_version=vb, poll_interval=0.2, lease=LEASE)
    app.queue("versioned")

    @app.workflow(name="versioned.job")
    def job(n: int) -> int:
        return n + 1

    app.launch()
    client = durably.Client(pg_url, schema=schema)
    pinned_client = durably.Client(pg_url, schema=schema, app_version=va)
    try:
        pinned = pinned_client.enqueue("versioned", "versioned.job", 1, id="pinned")
        free = client.enqueue("versioned", "versioned.job", 2, id="free")
        assert free.result(timeout=30) == 3
        # The unpinned one took the version of the worker that first ran it; the pinned
        # one waits for a worker recovering va (enqueued first, it would have run first).
        assert owners(db, ["free", "pinned"]) == {
            "free": (app.executor_id, 2, vb, "SUCCESS"),
            "pinned": (None, 1, va, "ENQUEUED"),
        }
        [info] = client.list_workflows(ids=["pinned"])
        assert info.served is False and info.app_version == va

        assert client.set_version(vb, ids=["pinned"]) == 1
        assert pinned.result(timeout=30) == 2
        assert owners(db, ["pinned"])["pinned"][2:] == (vb, "SUCCESS")
        assert sorted(i.id for i in app.list_workflows(app_version=vb)) == ["free", "pinned"]
        assert app.list_workflows(app_version=va) == []
    finally:
        client.close()
        pinned_client.close()


def test_parked_work_wakes_only_where_its_version_is_recovered(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    tag = uuid.uuid4().hex[:6]
    v1, v2, v3 = f"p1-{tag}", f"p2-{tag}", f"p3-{tag}"
    ran: list[str] = []

    def declare(app: durably.App, label: str) -> durably.Workflow[[], Any]:
        @app.workflow(name="versioned.waiter")
        def waiter() -> Any:
            ran.append(label)
            return durably.recv("go", timeout=600)

        return waiter

    first = make_app(app_version=v1, park_after=0, executor_id=f"e1-{tag}")
    waiter = declare(first, "v1")
    first.launch()
    waiter.options(id="parked").start()
    wait_until(lambda: owners(db, ["parked"])["parked"][0] is None, what="the wait to park")
    first.shutdown()

    second = make_app(app_version=v2, park_after=0, lease=LEASE, executor_id=f"e2-{tag}")
    declare(second, "v2")
    second.launch()
    second.send("parked", "hello", topic="go")
    wait_until(lambda: beats_past(db, f"e2-{tag}", 3 * LEASE), what="v2 beating")
    assert owners(db, ["parked"])["parked"][2:] == (v1, "PENDING")
    assert ran == ["v1"]

    # A worker that also recovers v1 wakes it (its version stays v1: the code that started it).
    third = make_app(app_version=v3, recover_versions=[v1], park_after=0, lease=LEASE)
    declare(third, "v3")
    third.launch()
    assert third.handle("parked").result(timeout=30) == "hello"
    assert ran == ["v1", "v3"]
    assert owners(db, ["parked"])["parked"][2:] == (v1, "SUCCESS")


def test_a_code_hash_restricts_recovery_only_when_asked(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any]
) -> None:
    """Without a version given, an app records a hash of its code but recovers every
    version: an ordinary deploy (any edit of a workflow changes the hash) must not leave
    the executions in flight waiting for an operator. ``recover_versions`` opts in."""
    tag = uuid.uuid4().hex[:6]
    old = f"old-{tag}"

    def declare(app: durably.App) -> durably.Workflow[[], Any]:
        @app.workflow(name="versioned.hash_waiter")
        def waiter() -> Any:
            return durably.recv("go", timeout=600)

        return waiter

    first = make_app(app_version=old, park_after=0, executor_id=f"h1-{tag}")
    waiter = declare(first)
    first.launch()
    waiter.options(id="by-old").start()
    waiter.options(id="by-old-2").start()
    wait_until(
        lambda: all(o[0] is None for o in owners(db, ["by-old", "by-old-2"]).values()),
        what="both waits to park",
    )
    first.shutdown()

    strict = make_app(park_after=0, lease=LEASE, recover_versions=[], executor_id=f"h2-{tag}")
    declare(strict)
    strict.launch()
    assert strict.app_version.startswith("code-")
    strict.send("by-old", "hello", topic="go")
    wait_until(lambda: beats_past(db, f"h2-{tag}", 3 * LEASE), what="the strict worker beating")
    assert owners(db, ["by-old"])["by-old"][2:] == (old, "PENDING")
    strict.shutdown()

    relaxed = make_app(park_after=0, lease=LEASE)
    declare(relaxed)
    relaxed.launch()
    assert relaxed.app_version.startswith("code-")
    assert relaxed.handle("by-old").result(timeout=30) == "hello"
    relaxed.send("by-old-2", "again", topic="go")
    assert relaxed.handle("by-old-2").result(timeout=30) == "again"


# ------------------------------------------------------------------ bad input


def test_bad_versions_are_refused_and_change_nothing(
    make_app: Callable[..., durably.App], pg_url: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    with pytest.raises(ConfigurationError, match="app_version must be a non-empty string"):
        durably.App(pg_url, app_version="")
    with pytest.raises(ConfigurationError, match="recover_versions must be a list"):
        durably.App(pg_url, recover_versions="v1")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="app_version must be a string"):
        durably.Client(pg_url, app_version=7)  # type: ignore[arg-type]

    app = make_app(app_version="bad-1")
    release = threading.Event()

    @app.step(name="versioned.hold")
    def hold() -> None:
        release.wait(60)

    @app.workflow(name="versioned.held")
    def held() -> None:
        hold()

    app.launch()
    handle = held.options(id="held").start()
    before = owners(db, ["held"])
    try:
        check_refusals(app, pg_url, schema)
        assert owners(db, ["held"]) == before
        assert before["held"][2] == "bad-1"

        # Good input moves it, by ID, printing how many; its run here goes on undisturbed
        # (same owner, same epoch) and records its outcome.
        done = run_cli(pg_url, schema, "workflows", "set-version", "--id", "held", "--to", "ok")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "moved 1 workflow(s) to version 'ok'"
        assert owners(db, ["held"])["held"] == (*before["held"][:2], "ok", "PENDING")
    finally:
        release.set()
    assert handle.result(timeout=30) is None
    assert owners(db, ["held"])["held"] == (*before["held"][:2], "ok", "SUCCESS")


def check_refusals(app: durably.App, pg_url: str, schema: str) -> None:

    with pytest.raises(InvalidArgument, match="app_version must be a string"):
        app.list_workflows(app_version=3)  # type: ignore[typeddict-item]
    with pytest.raises(InvalidArgument, match="non-empty"):
        app.list_workflows(app_version="")
    with pytest.raises(InvalidArgument, match="to_version must be a non-empty string"):
        app.set_version("", from_version="bad-1")
    with pytest.raises(InvalidArgument, match="needs ids"):
        app.set_version("bad-2")
    with pytest.raises(InvalidArgument, match="never runs again"):
        app.set_version("bad-2", from_version="bad-1", status="SUCCESS")
    with pytest.raises(InvalidArgument, match="unknown status"):
        app.set_version("bad-2", from_version="bad-1", status="SLEEPING")
    with pytest.raises(InvalidArgument, match="ids must be a list"):
        app.set_version("bad-2", ids="held")  # type: ignore[arg-type]
    assert "set-version: say which workflows to move" in cli_refused(
        pg_url, schema, "workflows", "set-version", "--to", "bad-2", code=2
    )
    assert "to_version must be a non-empty string" in cli_refused(
        pg_url, schema, "workflows", "set-version", "--from", "bad-1", "--to", " "
    )
    assert "app_version must be a non-empty string" in cli_refused(
        pg_url, schema, "workflows", "list", "--version", ""
    )
