"""Hostile names and keys: quotes, semicolons, backslashes, Unicode, NUL, empty strings and
10,000 characters as workflow IDs, queue names, topics, event and stream keys and schema
names. Each is stored and read back identical, or refused with a clear error that leaves
the tables as they were; none is ever run as SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

import durably
from durably.names import MAX_NAME_BYTES, MAX_NAME_CHARS
from durably.scheduling import MAX_NAME_LENGTH as MAX_SCHEDULE_NAME
from support import contents

# Stored as they are: each is the workflow ID, queue, topic, event key, stream key,
# step name, patch name, dedup key, idempotency key and schedule name (up to 200
# characters) of one workflow.
STORED = [
    "'; DROP TABLE workflows; --",
    'x"; DROP TABLE operations; --',
    "back\\slash \\x00 \\u0000 %s %(name)s {schema}",
    "semi;colon; SELECT pg_sleep(10);",
    "Unicode ✓ 日本語 🎉 \u202eright-to-left",
    " ",
    "a" * MAX_NAME_CHARS,
    "é" * (MAX_NAME_BYTES // 2),  # 512 characters, 1,024 bytes
]
# Refused, with what the error says.
REFUSED = [
    ("", "must not be empty"),
    ("nul\x00inside", "NUL"),
    ("lone \ud800 surrogate", "surrogate"),
    ("x" * 10_000, "too long"),
    ("a" * (MAX_NAME_CHARS + 1), "too long"),
    ("🎉" * (MAX_NAME_BYTES // 4 + 1), "bytes of UTF-8"),
]
TABLES = {
    "executors", "workflows", "operations", "watchers", "messages", "events", "streams",
    "queues", "schedules", "known_names", "chores",
}  # fmt: skip


def tables(db: psycopg.Connection[Any], schema: str) -> set[str]:
    rows = db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    )
    return {row[0] for row in rows}


def test_hostile_names_are_stored_and_read_back_identical(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], schema: str
) -> None:
    app = make_app()
    steps = {name: app.step(name=name)(lambda value: value) for name in STORED}

    @app.workflow(name="exercise")
    def exercise(name: str) -> list[Any]:
        message = durably.recv(name, timeout=60)
        durably.set_event(name, message)
        durably.write_stream(name, message)
        durably.close_stream(name)
        return [message, durably.patched(name), steps[name](name), durably.workflow_id()]

    queues = {name: app.queue(name) for name in STORED}
    app.launch()
    for name in STORED:
        handle = exercise.options(id=name, queue=name, dedup_key=name).start(name)
        assert handle.id == name
        app.send(name, {"to": name}, topic=name, idempotency_key=name)
        app.send(name, {"to": name}, topic=name, idempotency_key=name)  # the same: once
        assert handle.result(timeout=30) == [{"to": name}, True, name, name]
        assert app.get_event(name, name, timeout=5) == {"to": name}
        assert list(app.read_stream(name, name)) == [{"to": name}]
        (listed,) = app.list_workflows(ids=[name])
        assert (listed.id, listed.queue) == (name, queues[name].name)
        recorded = [step.name for step in app.list_steps(name)]
        assert recorded == [f"recv:{name}", name, name, name, name, name], recorded
        if len(name) <= MAX_SCHEDULE_NAME:  # a schedule's name is part of its runs' IDs
            app.create_schedule(name, exercise, "0 0 1 1 *")
            assert app.get_schedule(name).name == name

    # Read back with plain SQL: the same text, byte for byte; and every table still there.
    assert tables(db, schema) >= TABLES
    rows = db.execute("SELECT id, queue_name, dedup_key FROM workflows ORDER BY id").fetchall()
    assert rows == sorted((name, name, name) for name in STORED)
    keys = db.execute("SELECT DISTINCT key FROM events ORDER BY key").fetchall()
    assert keys == sorted((name,) for name in STORED)
    (messages,) = db.execute("SELECT count(*) FROM messages").fetchone() or (0,)
    assert messages == len(STORED)


def test_hostile_names_are_refused_clearly_and_nothing_is_written(
    make_app: Callable[..., durably.App], db: psycopg.Connection[Any], pg_url: str, schema: str
) -> None:
    app = make_app()

    @app.workflow(name="plain")
    def plain(value: str) -> str:
        return value

    queue = app.queue("good")
    app.launch()
    done = plain.options(id="existing").start("kept")
    assert done.result(timeout=30) == "kept"
    before = contents(db)
    client = durably.Client(pg_url, schema=schema)
    try:
        for bad, says in REFUSED:
            calls: list[Callable[[], object]] = [
                lambda bad=bad: plain.options(id=bad).start("x"),
                lambda bad=bad: plain.options(queue=bad).start("x"),
                lambda bad=bad: plain.options(queue="good", dedup_key=bad).start("x"),
                lambda bad=bad: app.send(bad, "m"),
                lambda bad=bad: app.send("existing", "m", idempotency_key=bad),
                lambda bad=bad: app.get_event("existing", bad, timeout=0),
                lambda bad=bad: list(app.read_stream("existing", bad, timeout=0)),
                lambda bad=bad: app.handle(bad),
                lambda bad=bad: app.cancel(bad),
                lambda bad=bad: queue.debounce(bad, 1.0, plain, "x"),
                lambda bad=bad: client.enqueue(bad, "plain", "x"),
                lambda bad=bad: client.send(bad, "m"),
                lambda bad=bad: app.list_workflows(name=bad),
                lambda bad=bad: app.list_workflows(queue=bad),
                lambda bad=bad: app.list_workflows(ids=[bad]),
                lambda bad=bad: app.list_steps(bad),
            ]
            if bad:  # the empty string is a topic of its own (None is another)
                calls.append(lambda bad=bad: app.send("existing", "m", topic=bad))
            for call in calls:
                with pytest.raises(durably.InvalidArgument) as refused:
                    call()
                message = str(refused.value)
                assert says in message, message
                assert len(message) < 400, message  # a 10,000-character name is cut short
            for call in (
                lambda bad=bad: app.workflow(name=bad)(lambda: None),
                lambda bad=bad: app.step(name=bad)(lambda: None),
                lambda bad=bad: app.create_schedule(bad, plain, "* * * * *"),
                lambda bad=bad: durably.App(pg_url, schema=schema, executor_id=bad),
                lambda bad=bad: durably.App(pg_url, schema=schema, name=bad),
            ):
                with pytest.raises(durably.ConfigurationError) as refused:
                    call()
                # A schedule's name has a shorter limit (200 characters): too long first.
                assert says in str(refused.value) or "too long" in str(refused.value)
    finally:
        client.close()
    assert contents(db) == before


def test_refused_names_inside_a_workflow_record_nothing(
    app: durably.App, db: psycopg.Connection[Any]
) -> None:
    """A durable operation given a bad key fails in the workflow, which records the error;
    the operation itself wrote nothing (no event, no stream entry, no message)."""

    @app.workflow(name="misuse")
    def misuse(kind: str, index: int) -> None:
        bad = REFUSED[index][0]  # (some cannot even be passed as an argument)
        if kind == "event":
            durably.set_event(bad, 1)
        elif kind == "stream":
            durably.write_stream(bad, 1)
        elif kind == "recv":
            durably.recv(bad, timeout=1)
        elif kind == "patch":
            durably.patched(bad)
        else:
            durably.close_stream(bad)

    for kind in ("event", "stream", "recv", "patch", "close"):
        for index, (bad, says) in enumerate(REFUSED):
            if kind == "recv" and bad == "":
                continue  # a topic of its own
            handle = misuse.start(kind, index)
            with pytest.raises(durably.InvalidArgument, match=says):
                handle.result(timeout=30)
            assert [s.kind for s in app.list_steps(handle.id)] == []
    for table in ("events", "streams", "messages", "operations"):
        assert db.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone() == (0,)


@pytest.mark.parametrize(
    "hostile",
    ['x"; DROP TABLE workflows; --', "o'brien; DROP SCHEMA public CASCADE", 'ü\\"', "Sp ace"],
)
def test_hostile_schema_names_are_quoted(
    pg_url: str, db: psycopg.Connection[Any], hostile: str
) -> None:
    """The schema is the one name placed in SQL text: always as a quoted identifier."""
    name = hostile + "_" + str(abs(hash(hostile)) % 10_000)
    app = durably.App(pg_url, schema=name)

    @app.workflow(name="greet")
    def greet(who: str) -> str:
        return f"hello {who}"

    try:
        app.launch()
        assert greet.options(id=hostile).start("you").result(timeout=30) == "hello you"
        assert tables(db, name) >= TABLES
        query = sql.SQL("SELECT id FROM {}.workflows").format(sql.Identifier(name))
        assert db.execute(query).fetchall() == [(hostile,)]
        assert db.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'public'"
        ).fetchone() == (1,)
    finally:
        app.shutdown(grace=5)
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("", "must not be empty"),
        ("nul\x00", "NUL"),
        ("\udcff", "surrogate"),
        ("x" * 64, "63 bytes"),
        ("é" * 32, "63 bytes"),
        (3, "must be a string"),
    ],
)
def test_unusable_schema_names_are_refused(pg_url: str, schema: object, says: str) -> None:
    for make in (durably.App, durably.Client):
        with pytest.raises(durably.ConfigurationError, match=says):
            make(pg_url, schema=schema)  # type: ignore[arg-type]
