"""Bad input is refused with a clear error, before anything is written: values without a
stored form or over the size limit, malformed cron, negative, NaN or infinite durations,
workflow-only calls outside a workflow, and input past a limit of PostgreSQL itself
(SQLSTATE class 54), which is bad input, not an outage to retry."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import durably
from durably.codec import MAX_VALUE_BYTES
from durably.store.database import Database
from durably.store.dialect import PostgreSQL
from durably.store.statements import Statement
from support import contents

NAN, INF = float("nan"), float("inf")


class Opaque:
    """No stored form."""


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

UNSTORABLE: list[tuple[Callable[[], object], type[durably.DurablyError], str]] = [
    (Opaque, durably.ValueEncodingError, "Opaque"),
    (lambda: {"when": NAN}, durably.ValueEncodingError, "NaN"),
    (lambda: ["ok", "nul\x00"], durably.ValueEncodingError, "NUL"),
    (lambda: "x" * MAX_VALUE_BYTES, durably.ValueTooLarge, "MAX_VALUE_BYTES"),
]


def test_values_that_cannot_be_stored_are_refused_before_anything_is_written(
    app: durably.App, db: psycopg.Connection[Any], pg_url: str, schema: str
) -> None:
    @app.workflow(name="takes")
    def takes(value: Any) -> None: ...

    queue = app.queue("bad-values")
    keeper = takes.options(id="kept").start(None)
    keeper.result(timeout=30)
    before = contents(db)
    client = durably.Client(pg_url, schema=schema)
    try:
        for make, error, says in UNSTORABLE:
            value = make()
            for call in (
                lambda value=value: takes(value),
                lambda value=value: takes.start(value),
                lambda value=value: takes.options(id="new", queue="bad-values").start(value),
                lambda value=value: queue.enqueue(takes, value),
                lambda value=value: queue.debounce("k", 1.0, takes, value),
                lambda value=value: app.send("kept", value),
                lambda value=value: client.enqueue("bad-values", "takes", value),
                lambda value=value: client.send("kept", value),
                lambda value=value: asyncio.run(app.send_async("kept", value)),
            ):
                with pytest.raises(error) as refused:
                    call()
                assert says in str(refused.value), str(refused.value)
    finally:
        client.close()
    assert contents(db) == before


def test_values_a_workflow_cannot_store_fail_it_and_record_nothing_else(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """Inside a workflow: the event, stream entry, message or result that cannot be stored
    is refused where it is made; the workflow fails with that error, nothing else is
    written (a step whose result cannot be stored records nothing: the workflow fails)."""
    target = app.workflow(name="target")(lambda: durably.recv("t", timeout=60))
    waiting = target.start()

    @app.workflow(name="stores")
    def stores(kind: str, index: int) -> Any:
        value = UNSTORABLE[index][0]()
        if kind == "event":
            durably.set_event("k", value)
        elif kind == "stream":
            durably.write_stream("k", value)
        elif kind == "send":
            app.send(waiting.id, value, topic="t")
        elif kind == "step":
            return produce(index)
        return value

    @app.step(name="produce")
    def produce(index: int) -> Any:
        return UNSTORABLE[index][0]()

    for kind in ("event", "stream", "send", "step", "result"):
        for index, (_, error, says) in enumerate(UNSTORABLE):
            handle = stores.start(kind, index)
            with pytest.raises(durably.DurablyError) as failed:
                handle.result(timeout=30)
            assert isinstance(failed.value, error) or error.__name__ in str(failed.value)
            assert says in str(failed.value), str(failed.value)
            kinds = [s.kind for s in app.list_steps(handle.id)]
            assert kinds == [], kinds
    for table in ("events", "streams", "messages"):
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        assert db.execute(query).fetchone() == (0,), table
    app.send(waiting.id, "done", topic="t")
    assert waiting.result(timeout=30) == "done"


def test_the_size_limit_counts_bytes_and_a_value_at_the_limit_is_stored(app: durably.App) -> None:
    @app.workflow(name="size")
    def size(value: str) -> int:
        return len(value)

    overhead = len('{"args":[""],"kwargs":{}}')
    fits = "x" * (MAX_VALUE_BYTES - overhead)
    assert size(fits) == len(fits)
    with pytest.raises(durably.ValueTooLarge) as refused:
        size(fits + "x")
    assert refused.value.size == MAX_VALUE_BYTES + 1
    with pytest.raises(durably.ValueTooLarge):  # 2 bytes a character in UTF-8
        size("é" * (MAX_VALUE_BYTES // 2))


def test_a_huge_error_is_recorded_cut_short(
    app: durably.App, db: psycopg.Connection[Any], pg_url: str, schema: str
) -> None:
    """An error cannot be refused (the step already failed): its record keeps at most
    PART_LIMIT characters of the message and of the traceback, and leaves out args that
    large. Read back elsewhere, it is a RecordedError with the message cut short."""
    from durably.codec.errors import PART_LIMIT

    @app.step(name="fetch")
    def fetch() -> None:
        raise RuntimeError("response body: " + "z" * (8 * PART_LIMIT))

    @app.workflow(name="fetching")
    def fetching() -> None:
        fetch()

    handle = fetching.start()
    with pytest.raises(RuntimeError):
        handle.result(timeout=30)
    recorded = db.execute(
        "SELECT max(octet_length(error::text)) FROM operations WHERE workflow_id = %s",
        (handle.id,),
    ).fetchone()
    assert recorded is not None and 0 < recorded[0] < 3 * PART_LIMIT, recorded
    client = durably.Client(pg_url, schema=schema)
    try:
        with pytest.raises(durably.RecordedError) as read_back:
            client.handle(handle.id).result(timeout=30)
    finally:
        client.close()
    message = str(read_back.value)
    assert len(message) < 2 * PART_LIMIT, len(message)
    assert message.endswith("more characters cut]"), message[-80:]


# ---------------------------------------------------------------------------------------------
# Durations, timeouts and cron
# ---------------------------------------------------------------------------------------------

BAD_SECONDS = [-1, -0.001, NAN, INF, -INF, 1e300, "10", dt.timedelta(seconds=5), True]


def test_negative_nan_infinite_and_absurd_durations_are_refused(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    flow = app.workflow(name="flow")(lambda: None)
    queue = app.queue("timed")
    finished = flow.start()
    finished.result(timeout=30)
    before = contents(db)
    for bad in BAD_SECONDS:
        calls: list[Callable[[], object]] = [
            lambda bad=bad: durably.sleep(bad),
            lambda bad=bad: app.get_event("x", "k", timeout=bad),
            lambda bad=bad: list(app.read_stream("x", "k", timeout=bad)),
            lambda bad=bad: flow.options(timeout=bad).start(),
            # A delay may be a timedelta: a negative one is what is refused there.
            lambda bad=bad: flow.options(
                queue="timed", delay=-bad if isinstance(bad, dt.timedelta) else bad
            ).start(),
            lambda bad=bad: queue.debounce("k", bad, flow),
            lambda bad=bad: finished.result(timeout=bad),
            lambda bad=bad: app.shutdown(grace=bad),
        ]
        for call in calls:
            with pytest.raises(durably.InvalidArgument) as refused:
                call()
            assert "seconds" in str(refused.value), str(refused.value)
    for bad in (NAN, INF, -1):
        configs: list[Callable[[], object]] = [
            lambda bad=bad: durably.App(schema="x", lease=bad),
            lambda bad=bad: durably.App(schema="x", park_after=bad),
            lambda bad=bad: durably.App(schema="x", poll_interval=bad),
            lambda bad=bad: app.step(name=f"s{bad}", interval=bad)(lambda: None),
            lambda bad=bad: app.step(name=f"s{bad}", max_delay=bad)(lambda: None),
            lambda bad=bad: app.step(name=f"s{bad}", backoff=bad)(lambda: None),
            lambda bad=bad: app.queue(f"q{bad}", rate_limit=(10, bad)),
        ]
        for call in configs:
            with pytest.raises(durably.ConfigurationError):
                call()
    with pytest.raises(durably.InvalidArgument, match="timezone-aware"):
        flow.options(queue="timed", delay=dt.datetime(2030, 1, 1)).start()
    assert contents(db) == before
    assert flow.start().result(timeout=30) is None  # a refused shutdown stopped nothing


def test_workflow_waits_refuse_bad_durations_in_the_workflow(app: durably.App) -> None:
    @app.workflow(name="waits")
    def waits(kind: str, index: int) -> None:
        bad = BAD_SECONDS[index]
        if kind == "sleep":
            durably.sleep(bad)  # type: ignore[arg-type]
        else:
            durably.recv("t", timeout=bad)  # type: ignore[arg-type]

    for kind in ("sleep", "recv"):
        for index in range(len(BAD_SECONDS)):
            handle = waits.start(kind, index)
            with pytest.raises(durably.InvalidArgument, match="seconds"):
                handle.result(timeout=30)
            assert app.list_steps(handle.id) == []


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("0 0 30 2 *", "day-of-month"),
        ("*/0 * * * *", "minute"),
        ("", "0 fields"),
        ("* * * * *\x00", "day-of-week"),
        ("'; DROP TABLE schedules; -- * * * *", "minute"),
        (5, "must be a string"),
    ],
)
def test_malformed_cron_is_refused(
    app: durably.App, db: psycopg.Connection[Any], cron: Any, says: str
) -> None:
    flow = app.workflow(name="ticked")(lambda at: None)
    with pytest.raises(durably.ConfigurationError, match=says) as refused:
        app.create_schedule("sched", flow, cron)
    assert "cron" in str(refused.value)
    with pytest.raises(durably.ConfigurationError, match=says):
        app.scheduled(cron)
    with pytest.raises(durably.ConfigurationError, match="timezone"):
        app.create_schedule("sched", flow, "* * * * *", timezone="Mars/Olympus")
    assert db.execute("SELECT count(*) FROM schedules").fetchone() == (0,)


# ---------------------------------------------------------------------------------------------
# Workflow-only calls outside a workflow
# ---------------------------------------------------------------------------------------------

OUTSIDE: list[tuple[str, Callable[[], object]]] = [
    ("recv", lambda: durably.recv("t", timeout=1)),
    ("set_event", lambda: durably.set_event("k", 1)),
    ("write_stream", lambda: durably.write_stream("k", 1)),
    ("close_stream", lambda: durably.close_stream("k")),
    ("patched", lambda: durably.patched("change")),
    ("deprecate_patch", lambda: durably.deprecate_patch("change")),
    ("workflow_id", durably.workflow_id),
    ("step_key", durably.step_key),
    ("recv_async", lambda: asyncio.run(durably.recv_async("t", timeout=1))),
    ("set_event_async", lambda: asyncio.run(durably.set_event_async("k", 1))),
    ("write_stream_async", lambda: asyncio.run(durably.write_stream_async("k", 1))),
    ("close_stream_async", lambda: asyncio.run(durably.close_stream_async("k"))),
    ("patched_async", lambda: asyncio.run(durably.patched_async("change"))),
]


@pytest.mark.parametrize(("name", "call"), OUTSIDE, ids=[name for name, _ in OUTSIDE])
def test_workflow_only_calls_outside_a_workflow_are_refused(
    app: durably.App, db: psycopg.Connection[Any], name: str, call: Callable[[], object]
) -> None:
    before = contents(db)
    with pytest.raises(durably.NotInWorkflow) as refused:
        call()
    assert f"durably.{name}()" in str(refused.value)
    assert "inside a" in str(refused.value) or "only be called in" in str(refused.value)
    assert contents(db) == before


def test_sleep_outside_a_workflow_is_a_plain_sleep_and_checks_its_argument() -> None:
    """DESIGN.md: outside a workflow (or in a step) ``sleep`` is ``time.sleep``."""
    durably.sleep(0)
    asyncio.run(durably.sleep_async(0))
    with pytest.raises(durably.InvalidArgument):
        durably.sleep(NAN)


# ---------------------------------------------------------------------------------------------
# A limit of PostgreSQL itself: SQLSTATE class 54
# ---------------------------------------------------------------------------------------------


def test_program_limit_errors_are_bad_input_not_an_outage() -> None:
    dialect = PostgreSQL()
    too_big = psycopg.errors.ProgramLimitExceeded("index row size 9000 exceeds maximum 2704")
    assert isinstance(too_big, psycopg.OperationalError)  # how psycopg files it
    assert dialect.limit_exceeded(too_big)
    assert not dialect.connection_lost(too_big)
    for other in (psycopg.errors.StatementTooComplex(), psycopg.errors.TooManyColumns()):
        assert dialect.limit_exceeded(other) and not dialect.connection_lost(other)
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    assert dialect.connection_lost(lost) and not dialect.limit_exceeded(lost)


def test_an_index_row_too_large_is_refused_at_once_and_never_retried(
    pg_url: str, schema: str, db: psycopg.Connection[Any]
) -> None:
    """A real class-54 error (PostgreSQL's "index row size exceeds maximum"), through the
    store's plain and group-committed paths: DatabaseLimitExceeded, the outage account
    untouched, nothing written."""
    store = Database(pg_url, schema)
    try:
        db.execute("CREATE TABLE indexed (v text)")
        db.execute("CREATE INDEX indexed_v ON indexed (v)")
        insert = sql.SQL("INSERT INTO {}.indexed (v) VALUES (%(v)s)").format(sql.Identifier(schema))
        statement = Statement(insert.as_string(None), {"v": os.urandom(8000).hex()})
        for run in (store.run, store.write, lambda st: store.run_transaction([st])):
            with pytest.raises(durably.DatabaseLimitExceeded) as refused:
                run(statement)
            assert isinstance(refused.value, durably.InvalidArgument)
            message = str(refused.value)
            assert "index row" in message and "SQLSTATE 54000" in message, message
            assert "nothing was written" in message
            assert not store.outage.ongoing
        assert db.execute("SELECT count(*) FROM indexed").fetchone() == (0,)
        assert store.run(Statement(insert.as_string(None), {"v": "small"})) == 1
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# A server that cannot be reached
# ---------------------------------------------------------------------------------------------


def test_the_connect_timeout_is_the_urls_else_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from durably.store.database import CONNECT_TIMEOUT, connect_timeout

    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    assert CONNECT_TIMEOUT == 10
    assert connect_timeout("postgresql://u@h/db") == {"connect_timeout": 10}
    assert connect_timeout("postgresql://u@h/db?connect_timeout=3") == {}
    assert connect_timeout("host=h dbname=db connect_timeout=3") == {}
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "4")
    assert connect_timeout("postgresql://u@h/db") == {}


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


def test_an_unreachable_server_at_launch_is_one_clear_line(cli: Any, tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql://worker:s3cret-pw@127.0.0.1:{port}/orders?connect_timeout=3"
    for make in (lambda: durably.App(url).launch(), lambda: durably.Client(url).list_workflows()):
        with pytest.raises(durably.DatabaseUnavailable) as refused:
            make()
        message = str(refused.value)
        assert "\n" not in message and "s3cret-pw" not in message, message
        assert f":{port}" in message and "Connection refused" in message, message
        assert refused.value.__cause__ is None and refused.value.__suppress_context__
    durably.App(url).shutdown(grace=0)  # an app that never launched shuts down quietly
    for command in (("workflows", "list"), ("migrate",)):
        line = cli.refused(*command, "--database-url", url, database=False)
        assert "cannot connect to PostgreSQL" in line and "s3cret-pw" not in line
    (tmp_path / "unreachable_app.py").write_text(f"import durably\napp = durably.App({url!r})\n")
    done = cli.run("worker", "unreachable_app:app", database=False, path=(str(tmp_path),))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("durably worker: cannot connect to PostgreSQL"), done.stderr
    assert done.stderr.count("\n") == 1 and "s3cret-pw" not in done.stderr


def test_a_step_of_another_app_is_refused_in_a_workflow_never_run_unrecorded(
    make_app: Callable[..., durably.App], db: Any
) -> None:
    app, other = make_app(), make_app(name="other")
    ran: list[str] = []

    @other.step
    def elsewhere() -> str:
        ran.append("step")
        return "done"

    @other.transaction
    def written(conn: Any) -> int:
        ran.append("transaction")
        return 1

    @app.workflow
    def calls_a_step() -> str:
        return elsewhere()

    @app.workflow
    def calls_a_transaction() -> int:
        return written()

    with app:
        for workflow, kind, name in (
            (calls_a_step, "step", "elsewhere"),
            (calls_a_transaction, "transaction", "written"),
        ):
            handle = workflow.options(id=f"calls-{kind}").start()
            with pytest.raises(
                durably.ConfigurationError,
                match=f"{kind} '[^']*{name}' is declared on another App than "
                f"workflow 'calls-{kind}'",
            ):
                handle.result(timeout=30)
    assert ran == []
    assert db.execute("SELECT count(*) FROM operations").fetchone() == (0,)
    # Outside any workflow both are plain calls, as always.
    assert elsewhere() == "done"


def test_a_workflow_started_in_a_step_needs_an_id_so_a_retry_starts_it_once(
    app: durably.App, db: Any
) -> None:
    @app.workflow
    def notify(who: str) -> str:
        return f"told {who}"

    attempts: list[int] = []

    @app.step
    def careless() -> str:
        return notify.start("ann").id

    @app.step(retries=1, interval=0.0)
    def careful() -> str:
        attempts.append(1)
        handle = notify.options(id=f"{durably.step_key()}-notify").start("bob")
        if len(attempts) == 1:
            raise RuntimeError("the step fails after starting it, and runs again")
        return handle.result(timeout=30)

    @app.workflow
    def parent_careless() -> str:
        return careless()

    @app.workflow
    def parent_careful() -> str:
        return careful()

    with pytest.raises(durably.ConfigurationError, match="started in a step without an ID"):
        parent_careless()
    assert parent_careful() == "told bob"
    assert len(attempts) == 2
    started = db.execute("SELECT inputs FROM workflows WHERE name LIKE %s", ("%notify",))
    assert len(started.fetchall()) == 1  # bob's, once: ann's was never started


def test_a_workflow_only_call_in_a_step_says_it_was_in_a_step(app: durably.App) -> None:
    @app.step
    def streams() -> None:
        durably.write_stream("words", "hello")

    @app.workflow
    def writer() -> None:
        streams()

    with pytest.raises(durably.NotInWorkflow, match=r"write_stream\(\) was called in a step"):
        writer()
    with pytest.raises(durably.NotInWorkflow, match="can only be called inside a workflow"):
        durably.write_stream("words", "hello")
