"""The web dashboard (``durably dashboard``) and the queue statistics behind it and
``durably queues``.

End to end, a real dashboard process is driven by a real headless Chromium (Debian's
``chromium`` with Playwright): list, filter, open a workflow, cancel a running one; a
screenshot of each page is kept under ``artifacts/dashboard``. Bad input is sent to the
process (or to the app in this process through Starlette's TestClient): each is refused
clearly and changes nothing. Keyset paging walks every row once, on an index.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import durably
from support import Cli, wait_until

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.timeout(180)


# ------------------------------------------------------------------ the workflows shown


@dataclass
class Shown:
    app: durably.App
    done: list[str]  # finished with steps
    failed: str
    parent: str
    waiting: str  # blocks in recv until cancelled


def _make_workflows(app: durably.App) -> Callable[[], Shown]:
    @app.step()
    def add(a: int, b: int) -> int:
        return a + b

    @app.step()
    def explode(reason: str) -> None:
        raise ValueError(f"refused: {reason}")

    @app.workflow()
    def adder(a: int, b: int) -> int:
        total = add(a, b)
        durably.set_event("stage", "added")
        durably.write_stream("progress", f"sum {total}")
        durably.close_stream("progress")
        return add(total, 1)

    @app.workflow()
    def failing(reason: str) -> None:
        explode(reason)

    @app.workflow()
    def child(n: int) -> int:
        return add(n, n)

    @app.workflow()
    def parent(n: int) -> int:
        durably.sleep(0.05)
        return child(n) + 1

    @app.workflow()
    def waiter() -> Any:
        return durably.recv("go", timeout=600)

    app.queue("fast", concurrency=2)

    def run() -> Shown:
        done = [adder.options(id=f"ok-{i}").start(i, 10).id for i in range(2)]
        done.append(adder.options(id="ok-2", queue="fast").start(2, 10).id)
        failed = failing.options(id="bad-1").start("<script>alert(1)</script>").id
        parent_id = parent.options(id="parent-1").start(4).id
        waiting = waiter.options(id="waiting-1").start().id
        for wf_id in [*done, parent_id]:
            app.handle(wf_id).result(timeout=30)
        with pytest.raises(Exception, match="refused"):
            app.handle(failed).result(timeout=30)
        wait_until(
            lambda: app.list_workflows(ids=[waiting])[0].status is durably.Status.PENDING,
            what="the waiter running",
        )
        return Shown(app, done, failed, parent_id, waiting)

    return run


@pytest.fixture
def shown(make_app: Callable[..., durably.App]) -> Shown:
    app = make_app()
    run = _make_workflows(app)
    app.launch()
    return run()


# ------------------------------------------------------------------ a dashboard process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.pop("DURABLY_DATABASE_URL", None)
    env.pop("DURABLY_DASHBOARD_TOKEN", None)
    env["COLUMNS"] = "200"
    return env


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[str]
    database: str
    schema: str


@pytest.fixture
def dashboard(pg_url: str, schema: str, shown: Shown) -> Iterator[Dashboard]:
    """``durably dashboard`` as a real process on a free port, stopped at the end."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durably.cli",
            "dashboard",
            "--port",
            str(port),
            "--database-url",
            pg_url,
            "--schema",
            schema,
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited: {process.stderr.read()}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"{url}/workflows", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, timeout=60, what="the dashboard answering")
        yield Dashboard(url, process, pg_url, schema)
    finally:
        process.terminate()
        try:
            out, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        # The announcement names the schema, never the database password.
        assert "durably dashboard of schema" in out
        password = re.search(r"://[^:/@]+:([^@]+)@", pg_url)
        if password:
            assert password.group(1) not in out + err


# ------------------------------------------------------------------ end to end in Chromium


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package "
            f"(apt-get install -y chromium; .ci/run does it) to run the browser test"
        )
    return CHROMIUM


def test_dashboard_in_chromium(dashboard: Dashboard, shown: Shown) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: errors.append(msg.text) if msg.type == "error" else None,
            )
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            # The list: every workflow, newest first.
            page.goto(f"{dashboard.url}/workflows")
            rows = page.locator("#workflow-rows tr.wf")
            expect(rows).to_have_count(7)  # 3 adders, failing, parent, child, waiter
            expect(page.locator("tr.wf[data-id='waiting-1'] .status")).to_have_text("PENDING")
            page.screenshot(path=str(ARTIFACTS / "1-list.png"), full_page=True)
            # Live refresh: work started elsewhere appears without a reload.
            with durably.Client(dashboard.database, schema=dashboard.schema) as client:
                client.enqueue("later", "served_elsewhere", id="live-1")
            expect(page.locator("tr.wf[data-id='live-1'] .status")).to_have_text("ENQUEUED")
            expect(rows).to_have_count(8)

            # Filtered by status.
            page.select_option("#filter-status", "SUCCESS")
            page.click("#apply-filters")
            expect(page).to_have_url(re.compile(r"status=SUCCESS"))
            expect(rows).to_have_count(5)  # 3 adders, parent, child
            expect(page.locator("#workflow-rows .status")).to_have_text(["SUCCESS"] * 5)
            page.screenshot(path=str(ARTIFACTS / "2-list-success.png"), full_page=True)

            # A workflow and its steps, its event and its stream.
            page.click("a.wf-link:text-is('ok-1')")
            expect(page).to_have_url(re.compile(r"/workflows/ok-1$"))
            expect(page.locator("#status")).to_have_text("SUCCESS")
            steps = page.locator("#steps tr.step")
            # add, set_event, write_stream, close_stream, add
            expect(steps).to_have_count(5)
            expect(steps.nth(0)).to_contain_text("add")
            expect(page.locator("#output")).to_have_text("12")
            expect(page.locator("#stream-1")).to_have_text("sum 11\n")
            page.screenshot(path=str(ARTIFACTS / "3-workflow.png"), full_page=True)

            # The parent's timeline: a sleep drawn as a wait, the child as a link.
            page.goto(f"{dashboard.url}/workflows/parent-1")
            expect(page.locator("#steps tr.look-wait")).to_have_count(1)
            page.screenshot(path=str(ARTIFACTS / "3b-parent.png"), full_page=True)
            page.click("#steps tr.look-child a")
            expect(page.locator("#status")).to_have_text("SUCCESS")
            expect(page.locator("dd a")).to_have_text("parent-1")

            # The failed one: its error with the traceback, escaped.
            page.goto(f"{dashboard.url}/workflows/{shown.failed}")
            expect(page.locator("#error")).to_contain_text("refused: <script>alert(1)</script>")
            expect(page.locator("pre.trace").first).to_contain_text("Traceback")
            page.screenshot(path=str(ARTIFACTS / "4-failed.png"), full_page=True)

            # Cancel the running one: a dialog asks, then the status changes.
            page.goto(f"{dashboard.url}/workflows/{shown.waiting}")
            expect(page.locator("#status")).to_have_text("PENDING")
            dialogs: list[str] = []

            def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.accept()

            page.once("dialog", accept)
            page.click("#cancel")
            expect(page.locator("#status")).to_have_text("CANCELLED")
            expect(page.locator("#done")).to_contain_text("cancelled")
            assert dialogs == [f"Cancel workflow {shown.waiting}?"]
            page.screenshot(path=str(ARTIFACTS / "5-cancelled.png"), full_page=True)

            with durably.Client(dashboard.database, schema=dashboard.schema) as client:
                for i in range(3):
                    client.enqueue("backlog", "served_elsewhere", i)
            page.goto(f"{dashboard.url}/queues")
            expect(page.locator("tr.queue[data-queue='backlog'] .depth")).to_have_text("3")
            expect(page.locator("tr.queue[data-queue='fast'] svg.chart")).to_have_count(1)
            page.screenshot(path=str(ARTIFACTS / "6-queues.png"), full_page=True)
            page.goto(f"{dashboard.url}/schedules")
            expect(page.locator("h1")).to_have_text("Schedules")
            page.screenshot(path=str(ARTIFACTS / "7-schedules.png"), full_page=True)
            assert errors == [], errors  # no script error, no CSP violation
        finally:
            browser.close()
    (info,) = shown.app.list_workflows(ids=[shown.waiting])
    assert info.status is durably.Status.CANCELLED
    print(f"\nscreenshots: {ARTIFACTS}")


# ------------------------------------------------------------------ bad input, to the process


def _csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def _table(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT id, status, updated_at FROM workflows ORDER BY id").fetchall()


def test_bad_input_is_refused_and_changes_nothing(
    dashboard: Dashboard, shown: Shown, db: psycopg.Connection[Any]
) -> None:
    with httpx.Client(base_url=dashboard.url, timeout=15) as client:
        missing = client.get("/workflows/no-such-workflow")
        assert missing.status_code == 404
        assert "no workflow with ID &#39;no-such-workflow&#39; exists" in missing.text

        before = _table(db)
        token = _csrf(client, f"/workflows/{shown.waiting}")
        origin = {"Origin": dashboard.url}

        # A forged POST: no CSRF token, then a wrong one, then from another site.
        forged = client.post(f"/workflows/{shown.waiting}/cancel", data={"confirmed": "yes"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        wrong = client.post(
            f"/workflows/{shown.waiting}/cancel",
            data={"confirmed": "yes", "csrf": "0" * 64},
            headers=origin,
        )
        assert wrong.status_code == 403
        elsewhere = client.post(
            f"/workflows/{shown.waiting}/cancel",
            data={"confirmed": "yes", "csrf": token},
            headers={"Origin": "http://evil.example"},
        )
        assert elsewhere.status_code == 403 and "cross-site" in elsewhere.text
        # Another session's token is not this one's.
        with httpx.Client(base_url=dashboard.url, timeout=15) as other:
            stolen = other.post(
                f"/workflows/{shown.waiting}/cancel",
                data={"confirmed": "yes", "csrf": token},
                headers=origin,
            )
            assert stolen.status_code == 403

        # Fork from a step beyond the last: a clear error, no new workflow.
        beyond = client.post(
            f"/workflows/{shown.done[0]}/fork",
            data={"confirmed": "yes", "csrf": token, "from_step": "9"},
            headers=origin,
        )
        assert beyond.status_code == 400
        assert "step 9 is beyond the last step of &#39;ok-0&#39;" in beyond.text
        assert "fork from 1 to 5" in beyond.text
        not_a_step = client.post(
            f"/workflows/{shown.done[0]}/fork",
            data={"confirmed": "yes", "csrf": token, "from_step": "x"},
            headers=origin,
        )
        assert not_a_step.status_code == 400

        # A Host this server does not answer to (DNS rebinding).
        rebound = client.get("/workflows", headers={"Host": "attacker.example:80"})
        assert rebound.status_code == 421

        # A bad filter and a bad page cursor.
        assert client.get("/workflows", params={"status": "NOPE"}).status_code == 400
        assert client.get("/workflows", params={"older": "yesterday"}).status_code == 400
        assert _table(db) == before  # nothing changed

        # Without the dialog's answer, the server asks on a page of its own first.
        asked = client.post(
            f"/workflows/{shown.waiting}/cancel", data={"csrf": token}, headers=origin
        )
        assert asked.status_code == 200 and "Yes, cancel" in asked.text
        assert _table(db) == before

        # The same with the token and the answer: done.
        done = client.post(
            f"/workflows/{shown.waiting}/cancel",
            data={"csrf": token, "confirmed": "yes"},
            headers=origin,
        )
        assert done.status_code == 303
        assert db.execute(
            "SELECT status FROM workflows WHERE id = %s", (shown.waiting,)
        ).fetchone() == ("CANCELLED",)


def test_non_loopback_bind_without_token_is_refused(pg_url: str, schema: str) -> None:
    for host in ("0.0.0.0", "192.0.2.1"):
        done = Cli(pg_url, schema).run("dashboard", "--host", host)
        assert done.returncode == 1, done
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done.stderr
        assert "without a token" in done.stderr and "--token" in done.stderr
    with psycopg.connect(pg_url) as conn:  # refused before connecting: no schema made
        made = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        assert made == (0,)


# ------------------------------------------------------------------ in process: modes, escaping


@pytest.fixture
def client(pg_url: str, schema: str, shown: Shown) -> Iterator[durably.Client]:
    made = durably.Client(pg_url, schema=schema)
    yield made
    made.close()


def _test_client(client: durably.Client, **settings: Any) -> Any:
    from starlette.testclient import TestClient

    from durably.dashboard.app import build
    from durably.dashboard.settings import Settings

    return TestClient(build(client, Settings(**settings)), base_url="http://127.0.0.1:8321")


def test_read_only_hides_buttons_and_refuses_posts(
    client: durably.Client, shown: Shown, db: psycopg.Connection[Any]
) -> None:
    with _test_client(client, read_only=True) as web:
        page = web.get(f"/workflows/{shown.waiting}")
        assert page.status_code == 200
        assert 'id="cancel"' not in page.text and "read-only" in page.text
        before = _table(db)
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', web.get("/workflows").text)
        assert token is None  # no form on a read-only dashboard holds one
        for action in ("cancel", "resume", "fork"):
            refused = web.post(
                f"/workflows/{shown.waiting}/{action}",
                data={"confirmed": "yes", "from_step": "1"},
            )
            assert refused.status_code == 403 and "read-only" in refused.text
        assert _table(db) == before


def test_a_token_is_required_when_set(client: durably.Client, shown: Shown) -> None:
    secret = "s3cret-token-for-tests"
    with _test_client(client, token=secret) as web:
        assert web.get("/workflows").status_code == 401
        assert web.get("/workflows", params={"token": "wrong-token"}).status_code == 401
        assert web.get("/static/dashboard.css").status_code == 401
        bearer = web.get("/workflows", headers={"Authorization": f"Bearer {secret}"})
        assert bearer.status_code == 200
        login = web.get(
            "/workflows", params={"token": secret, "status": "SUCCESS"}, follow_redirects=False
        )
        assert login.status_code == 303
        assert login.headers["location"] == "/workflows?status=SUCCESS"  # token gone
        assert "httponly" in login.headers["set-cookie"].lower()
        assert web.get("/workflows").status_code == 200  # the cookie carries it now
    with pytest.raises(durably.ConfigurationError, match="token"):
        from durably.dashboard.settings import Settings

        Settings(host="0.0.0.0", token=None)


def test_pages_are_escaped_and_carry_security_headers(client: durably.Client, shown: Shown) -> None:
    with _test_client(client) as web:
        page = web.get(f"/workflows/{shown.failed}")
        assert page.status_code == 200
        assert "<script>alert(1)" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        headers = page.headers
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert "<script" not in page.text.replace('<script src="/static/dashboard.js"', "")
        for asset in ("/static/dashboard.js", "/static/dashboard.css"):
            assert web.get(asset).status_code == 200
        # Search by ID: found, it opens; not found, the list says so.
        found = web.get("/workflows", params={"id": shown.failed}, follow_redirects=False)
        assert found.status_code == 303 and found.headers["location"].endswith(shown.failed)
        missing = web.get("/workflows", params={"id": "nope-<b>"})
        assert "No workflow with ID <code>nope-&lt;b&gt;</code>" in missing.text
        # A stream, read from its offset as JSON.
        tail = web.get(f"/workflows/{shown.done[0]}/streams/progress", params={"offset": 0})
        assert tail.json() == {"values": ["sum 10"], "offset": 1, "done": True}
        assert web.get("/workflows/rows").status_code == 200
        assert web.get("/queues/rows").status_code == 200
        assert web.get("/workflows/ok-0/live").status_code == 200


# ------------------------------------------------------------------ keyset paging


def test_the_list_pages_through_every_workflow_once(client: durably.Client, shown: Shown) -> None:
    from durably.dashboard import listing

    every = [w.id for w in client.list_workflows(descending=True)]
    old_page = listing.PAGE
    listing.PAGE = 2
    try:
        with _test_client(client) as web:
            seen: list[str] = []
            address = "/workflows"
            while True:
                text = web.get(address).text
                seen += re.findall(r'<tr class="wf" data-id="([^"]+)"', text)
                older = re.search(r'id="older" href="([^"]+)"', text)
                if older is None:
                    break
                address = older.group(1).replace("&amp;", "&")
            assert seen == every
            back = re.search(r'id="newer" href="([^"]+)"', text)
            assert back is not None
            previous = web.get(back.group(1).replace("&amp;", "&")).text
            assert re.findall(r'<tr class="wf" data-id="([^"]+)"', previous) == every[-3:-1]
    finally:
        listing.PAGE = old_page


def test_list_workflows_pages_by_cursor(client: durably.Client, shown: Shown) -> None:
    every = client.list_workflows(descending=True)
    walked: list[str] = []
    after = None
    while True:
        page = client.list_workflows(descending=True, limit=3, after=after)
        if not page:
            break
        walked += [w.id for w in page]
        after = (page[-1].created_at, page[-1].id)
    assert walked == [w.id for w in every]
    oldest_first = client.list_workflows(after=(every[-1].created_at, every[-1].id))
    assert [w.id for w in oldest_first] == [w.id for w in reversed(every)][1:]
    with pytest.raises(durably.InvalidArgument, match="after must be a"):
        client.list_workflows(after=("yesterday", "x"))  # type: ignore[typeddict-item]
    with pytest.raises(durably.InvalidArgument, match="queue must be a string"):
        client.list_workflows(queue=3)  # type: ignore[typeddict-item]


def test_filtered_pages_use_an_index(pg_url: str, schema: str, shown: Shown) -> None:
    """Newest-first pages by status, name or queue, from a cursor, read an index range
    (no scan of the table, no sort of every match) at 100k rows."""
    from durably.info import list_query
    from durably.store.statements import Statements

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL(
                "INSERT INTO {}.workflows (id, name, status, inputs, max_recovery_attempts,"
                " created_at, queue_name)"
                " SELECT 'bulk-' || i, CASE WHEN i % 997 = 0 THEN 'rare' ELSE 'common' END,"
                "  CASE WHEN i % 1000 = 0 THEN 'ERROR' ELSE 'SUCCESS' END, '[]', 10,"
                "  now() - make_interval(secs => i), CASE WHEN i % 1009 = 0 THEN 'rareq' END"
                " FROM generate_series(1, 100000) i"
            ).format(psycopg.sql.Identifier(schema))
        )
        conn.execute(psycopg.sql.SQL("ANALYZE {}.workflows").format(psycopg.sql.Identifier(schema)))
        statements = Statements(schema)
        cursor = (datetime.now(UTC) - timedelta(hours=3), "bulk-50000")
        for filters in ({"status": "ERROR"}, {"name": "rare"}, {"queue": "rareq"}, {}):
            for after in (None, cursor):
                st = list_query(statements, descending=True, limit=51, after=after, **filters)
                plan = "\n".join(
                    row[0] for row in conn.execute("EXPLAIN " + st.sql, st.params).fetchall()
                )
                assert "Seq Scan on workflows" not in plan, (filters, plan)
                # an incremental sort (ties of created_at by id) is fine; sorting every
                # match is not, unless they are the few rows of a rare name or queue read
                # by a bitmap of that filter's own index
                assert not re.search(r"->\s+Sort\s+\(", plan) or re.search(
                    r"Bitmap Index Scan on workflows_(name|queue|queue_name)_created", plan
                ), (filters, plan)


# ------------------------------------------------------------------ queue statistics


def test_queue_stats_and_the_queues_command(
    pg_url: str, schema: str, make_app: Callable[..., durably.App]
) -> None:
    app = make_app()

    @app.workflow()
    def quick(n: int) -> int:
        return n

    app.queue("fast", concurrency=4)
    app.launch()
    for i in range(3):
        app.handle(app.queue("fast", concurrency=4).enqueue(quick, i).id).result(timeout=30)
    with durably.Client(pg_url, schema=schema) as client:
        # Work on a queue no worker listens to waits there.
        for i in range(4):
            client.enqueue("backlog", "not_served_here", i)
        client.enqueue("backlog", "not_served_here", 9, delay=3600)
        stats = {s.queue: s for s in client.queue_stats(minutes=5)}
    assert set(stats) == {"fast", "backlog"}
    fast, backlog = stats["fast"], stats["backlog"]
    assert (fast.depth, fast.running, fast.concurrency, fast.workers) == (0, 0, 4, 1)
    assert len(fast.started_per_minute) == 5 and sum(fast.started_per_minute) == 3
    assert fast.started_last_minute == fast.started_per_minute[-1]
    assert fast.oldest_wait is None
    assert (backlog.depth, backlog.delayed, backlog.running) == (4, 1, 0)
    assert backlog.concurrency is None and backlog.workers == 0
    assert backlog.oldest_wait is not None and backlog.oldest_wait >= timedelta(0)
    with pytest.raises(durably.InvalidArgument, match="minutes"):
        app.queue_stats(minutes=0)

    done = Cli(pg_url, schema).run("queues", "--json", "--minutes", "5")
    assert done.returncode == 0, done.stderr
    listed = {q["queue"]: q for q in json.loads(done.stdout)}
    assert listed["backlog"]["depth"] == 4 and listed["backlog"]["delayed"] == 1
    assert sum(listed["fast"]["started_per_minute"]) == 3
    assert listed["fast"]["concurrency"] == 4
    table = Cli(pg_url, schema).run("queues")
    assert table.returncode == 0, table.stderr
    assert re.search(r"backlog\s+4\s+1\s+0", table.stdout), table.stdout
    assert "2 queue(s)" in table.stdout


def test_without_the_extra_the_command_names_it(tmp_path: Path, pg_url: str, schema: str) -> None:
    # A starlette that cannot be imported stands for an install without the extra.
    (tmp_path / "starlette").mkdir()
    (tmp_path / "starlette" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'starlette'\", name='starlette')\n"
    )
    done = Cli(pg_url, schema).run("dashboard", path=(str(tmp_path),))
    assert done.returncode == 1, done
    assert done.stderr.count("\n") == 1, done.stderr
    assert "pip install 'durably[dashboard]'" in done.stderr


def test_metrics_of_the_queues_behind_the_token(client: durably.Client, shown: Shown) -> None:
    secret = "metrics-token-for-tests"
    with _test_client(client, token=secret) as web:
        assert web.get("/metrics").status_code == 401
        scraped = web.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        assert "# TYPE durably_queue_depth gauge" in scraped.text
