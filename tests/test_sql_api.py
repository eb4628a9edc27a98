"""The SQL-level API (migration 0007): enqueue, send, get_event and workflow_status called
from a plain psycopg connection, as another language would, against a worker App.

The caller's side of every test uses only SQL on a plain connection; the worker side is
an ordinary App that registers the workflows and serves the queues.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import psycopg
import pydantic
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

import durably
from durably.codec import JsonCodec
from durably.store import sqlfile
from durably.store.statements import Statements
from support import wait_until

pytestmark = pytest.mark.timeout(120)

DEADLINE = 30.0
WAITS = "; it is recorded and waits until one does"


# ------------------------------------------------------------------ the worker's code


@dataclass
class Order:
    sku: str
    qty: int
    placed: datetime


class Customer(pydantic.BaseModel):
    name: str
    since: date


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Stage:
    name: str
    at: datetime


class World:
    """A launched worker App on the test's schema, and what its workflows saw."""

    def __init__(self, app: durably.App) -> None:
        self.app = app
        self.seen: list[tuple[Any, ...]] = []
        self.runs: dict[str, int] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()

        @app.workflow(name="typed")
        def typed(
            order: Order,
            at: datetime,
            ref: uuid.UUID,
            amount: Decimal,
            *,
            customer: Customer,
            color: Color,
            wait: timedelta,
            blob: bytes,
            pair: tuple[int, str],
        ) -> str:
            self.seen.append((order, at, ref, amount, customer, color, wait, blob, pair))
            return f"{order.sku} x{order.qty}"

        @app.workflow(name="greet")
        def greet(who: str) -> str:
            with self.lock:
                self.runs[who] = self.runs.get(who, 0) + 1
            return f"hello {who}"

        @app.workflow(name="listen")
        def listen(topic: str) -> Any:
            return durably.recv(topic, timeout=120)

        @app.workflow(name="signals")
        def signals() -> str:
            durably.set_event("dict", {"ok": True, "n": [1, 2]})
            durably.set_event("number", 42)
            durably.set_event("text", "approved")
            durably.set_event("nothing", None)
            durably.set_event("stage", Stage("packed", datetime(2024, 5, 1, 12, tzinfo=UTC)))
            durably.set_event("twice", "first")
            durably.set_event("twice", "second")
            return "set"

        self.typed = typed
        app.queue("jobs")
        app.queue("ranked", concurrency=1, priority=True)
        app.queue("plain")
        app.launch()


@pytest.fixture
def world(make_app: Callable[..., durably.App]) -> World:
    return World(make_app())


class Api:
    """The four functions, called with parameters on a plain connection."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.notices: list[str] = []
        # a Diagnostic is only readable inside the handler
        conn.add_notice_handler(lambda d: self.notices.append(d.message_primary or ""))

    def call(self, function: str, *params: Any) -> Any:
        query = sql.SQL("SELECT {}.{}({})").format(
            sql.Identifier(self.schema),
            sql.Identifier(function),
            sql.SQL(", ").join([sql.Placeholder()] * len(params)),
        )
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]

    def enqueue(
        self, queue: str | None, name: str | None, args: Any = None, options: Any = None
    ) -> str:
        return str(self.call("enqueue", queue, name, _json(args, []), _json(options, {})))

    def send(
        self, workflow_id: str, message: Any, topic: str | None = None, key: str | None = None
    ) -> None:
        self.call("send", workflow_id, Jsonb(message), topic, key)

    def get_event(self, workflow_id: str, key: str) -> Any:
        return self.call("get_event", workflow_id, key)

    def status(self, workflow_id: str) -> str | None:
        status: str | None = self.call("workflow_status", workflow_id)
        return status

    def wait_status(self, workflow_id: str, *wanted: str) -> str:
        return wait_until(
            lambda: (s := self.status(workflow_id)) in wanted and s,
            DEADLINE,
            f"{workflow_id} to reach {wanted} (now {self.status(workflow_id)})",
        )

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a query on the test's schema ({} stands for it)."""
        return self.conn.execute(
            sql.SQL(query).format(sql.Identifier(self.schema)), params
        ).fetchall()

    def count(self, table: str) -> int:
        return int(self.rows(f"SELECT count(*) FROM {{}}.{table}")[0][0])


def _json(value: Any, default: Any) -> Any:
    """A jsonb parameter: ``value`` as JSON, or the text after "raw:" for PostgreSQL to parse."""
    if isinstance(value, str) and value.startswith("raw:"):
        return value[4:]  # text: PostgreSQL parses it as jsonb
    return Jsonb(default if value is None else value)


@pytest.fixture
def api(pg_url: str, schema: str) -> Iterator[Api]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield Api(conn, schema)


# ------------------------------------------------------------------ enqueue


def test_enqueue_runs_on_a_worker_with_typed_arguments(world: World, api: Api) -> None:
    args = {
        "args": [
            {"sku": "A-1", "qty": 3, "placed": "2024-05-01T10:00:00+02:00"},
            "2024-05-01T12:30:00.250Z",  # as JavaScript's toISOString() writes it
            "12345678-1234-5678-1234-567812345678",
            "19.99",
        ],
        "kwargs": {
            "customer": {"name": "Ada", "since": "2020-01-31"},
            "color": "blue",
            "wait": 90.5,
            "blob": "aGVsbG8=",
            "pair": [7, "seven"],
        },
    }
    workflow_id = api.enqueue("jobs", "typed", args)
    assert api.wait_status(workflow_id, "SUCCESS", "ERROR", "DEAD_LETTER") == "SUCCESS"
    assert api.status(workflow_id) == durably.Status.SUCCESS
    assert world.app.handle(workflow_id).result(timeout=DEADLINE) == "A-1 x3"
    (seen,) = world.seen
    order, at, ref, amount, customer, color, wait, blob, pair = seen
    tz2 = datetime.fromisoformat("2024-05-01T10:00:00+02:00").tzinfo
    assert order == Order("A-1", 3, datetime(2024, 5, 1, 10, tzinfo=tz2))
    assert type(order) is Order and type(order.placed) is datetime
    assert at == datetime(2024, 5, 1, 12, 30, 0, 250000, tzinfo=UTC)
    assert ref == uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert type(ref) is uuid.UUID
    assert amount == Decimal("19.99") and type(amount) is Decimal
    assert customer == Customer(name="Ada", since=date(2020, 1, 31))
    assert type(customer.since) is date
    assert color is Color.BLUE
    assert wait == timedelta(seconds=90.5)
    assert blob == b"hello"
    assert pair == (7, "seven")


def test_arguments_that_do_not_fit_the_hints_fail_the_workflow_at_once(
    world: World, api: Api
) -> None:
    # A worker cannot decode "not a date" for a datetime parameter, and never will: the
    # workflow ends in ERROR naming why, instead of being claimed again and again.
    args = {"args": [{"sku": "A-1", "qty": 3, "placed": "2024-05-01T10:00:00Z"}, "not a date",
                     "12345678-1234-5678-1234-567812345678", "1"],
            "kwargs": {"customer": {"name": "Ada", "since": "2020-01-31"}, "color": "blue",
                       "wait": 1, "blob": "", "pair": [1, "one"]}}  # fmt: skip
    workflow_id = api.enqueue("jobs", "typed", args)
    assert api.wait_status(workflow_id, "SUCCESS", "ERROR", "DEAD_LETTER") == "ERROR"
    with pytest.raises(durably.ValueDecodingError, match="datetime"):
        world.app.handle(workflow_id).result(timeout=DEADLINE)
    assert world.seen == []
    [(attempts,)] = api.rows(
        "SELECT recovery_attempts FROM {}.workflows WHERE id = %s", workflow_id
    )
    assert attempts <= 1


def test_positional_array_and_the_default_arguments(world: World, api: Api) -> None:
    first = api.enqueue("jobs", "greet", ["ann"])
    second = api.call("enqueue", "jobs", "greet", Jsonb({"kwargs": {"who": "bob"}}))
    for workflow_id in (first, second):
        assert api.wait_status(workflow_id, "SUCCESS", "ERROR") == "SUCCESS"
    assert world.app.handle(first).result(timeout=DEADLINE) == "hello ann"
    assert world.app.handle(second).result(timeout=DEADLINE) == "hello bob"
    stored = dict(api.rows("SELECT id, inputs FROM {}.workflows"))
    assert stored == {
        first: {"args": ["ann"], "kwargs": {}},
        second: {"args": [], "kwargs": {"who": "bob"}},
    }
    uuid.UUID(first)  # a generated ID is a UUID, as from Python


def test_rows_are_those_of_a_python_client_enqueue(world: World, api: Api, pg_url: str) -> None:
    """Nobody serves queue "parking": both workflows stay as enqueue wrote them."""
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    options = {
        "priority": 7, "dedup_key": None, "partition_key": "p-1", "delay": 600, "timeout": 30,
    }  # fmt: skip
    from_sql = api.enqueue(
        "parking", "typed", {"args": [1, when.isoformat()], "kwargs": {"x": [1]}},
        {**options, "id": "from-sql"},
    )  # fmt: skip
    with durably.Client(pg_url, schema=api.schema) as client:
        from_python = client.enqueue(
            "parking", "typed", 1, when, x=[1], id="from-python",
            priority=7, partition_key="p-1", delay=600, timeout=30,
        ).id  # fmt: skip
    assert (from_sql, from_python) == ("from-sql", "from-python")
    columns = (
        "name, status, inputs, output, error, executor_id, epoch, recovery_attempts, "
        "max_recovery_attempts, parent_id, parent_step, forked_from, codec, deadline, "
        "timeout_seconds, wake_at, wait_kind, queue_name, priority, dedup_key, partition_key, "
        "debounce_key, started_at, claim_token, completed_at"
    )
    rows = api.rows(f"SELECT id, {columns} FROM {{}}.workflows ORDER BY id")
    assert [r[0] for r in rows] == ["from-python", "from-sql"]
    assert rows[0][1:] == rows[1][1:]
    assert rows[1][2] == "DELAYED"
    (delayed,) = api.rows(
        "SELECT available_at - enqueued_at FROM {}.workflows WHERE id = 'from-sql'"
    )
    assert timedelta(seconds=599) < delayed[0] <= timedelta(seconds=600)


def test_same_id_twice_is_one_workflow(world: World, api: Api) -> None:
    first = api.enqueue("jobs", "greet", ["once"], {"id": "order-1"})
    again = api.enqueue("jobs", "greet", ["once"], {"id": "order-1"})
    assert first == again == "order-1"
    assert api.wait_status("order-1", "SUCCESS", "ERROR") == "SUCCESS"
    assert api.enqueue("jobs", "greet", ["once"], {"id": "order-1"}) == "order-1"  # finished
    assert api.count("workflows") == 1
    assert world.runs == {"once": 1}
    with pytest.raises(psycopg.errors.UniqueViolation, match="already belongs to workflow"):
        api.enqueue("jobs", "typed", [], {"id": "order-1"})
    assert api.count("workflows") == 1


def test_priority_orders_waiting_work_and_send_wakes_recv(world: World, api: Api) -> None:
    """ "ranked" runs one at a time: a workflow parked in recv holds the slot while work
    with priorities is enqueued; a message sent from SQL wakes it."""
    blocker = api.enqueue("ranked", "listen", ["go"])
    wait_until(
        lambda: api.rows(
            "SELECT 1 FROM {}.workflows WHERE id = %s AND wait_kind = 'recv' "
            "AND executor_id IS NULL",
            blocker,
        ),
        DEADLINE,
        "the blocker parked in recv",
    )
    low = api.enqueue("ranked", "greet", ["p5"], {"priority": 5})
    high = api.enqueue("ranked", "greet", ["p1"], {"priority": 1})
    none = api.enqueue("ranked", "greet", ["none"])
    assert [api.status(i) for i in (low, high, none)] == ["ENQUEUED"] * 3
    assert dict(api.rows("SELECT id, priority FROM {}.workflows")) == {
        blocker: None, low: 5, high: 1, none: None,
    }  # fmt: skip
    api.send(blocker, {"approved": True, "by": "sql"}, topic="go")
    assert world.app.handle(blocker).result(timeout=DEADLINE) == {"approved": True, "by": "sql"}
    for workflow_id in (low, high, none):
        api.wait_status(workflow_id, "SUCCESS")
    order = [
        r[0]
        for r in api.rows("SELECT id FROM {}.workflows WHERE id <> %s ORDER BY started_at", blocker)
    ]
    # work without a priority first, then lower numbers first
    assert order == [none, high, low]


def test_priority_on_a_queue_declared_without_priorities(world: World, api: Api) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="without priority=True"):
        api.enqueue("plain", "greet", ["x"], {"priority": 1})
    assert api.count("workflows") == 0


def test_delay(world: World, api: Api) -> None:
    later = api.enqueue("jobs", "greet", ["later"], {"delay": 3600})
    soon = api.enqueue("jobs", "greet", ["soon"], {"delay": 0.3})
    assert api.status(later) == "DELAYED"
    assert api.wait_status(soon, "SUCCESS") == "SUCCESS"
    assert api.status(later) == "DELAYED"
    (row,) = api.rows("SELECT available_at - enqueued_at FROM {}.workflows WHERE id = %s", later)
    assert timedelta(seconds=3599) < row[0] <= timedelta(seconds=3600)


def test_dedup_key(world: World, api: Api) -> None:
    holder = api.enqueue("jobs", "listen", ["done"], {"dedup_key": "k"})
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        api.enqueue("jobs", "greet", ["dup"], {"dedup_key": "k", "id": "refused"})
    assert f"dedup_key 'k' (workflow '{holder}')" in str(caught.value)
    assert caught.value.diag.message_hint is not None
    assert '"if_duplicate": "existing"' in caught.value.diag.message_hint
    assert api.status("refused") is None
    assert api.count("workflows") == 1
    existing = api.enqueue("jobs", "greet", ["dup"], {"dedup_key": "k", "if_duplicate": "existing"})
    assert existing == holder
    assert api.count("workflows") == 1
    # another queue has its own keys; a finished holder frees the key
    other = api.enqueue("plain", "greet", ["other"], {"dedup_key": "k"})
    assert other != holder
    api.send(holder, "stop", topic="done")
    assert api.wait_status(holder, "SUCCESS") == "SUCCESS"
    after = api.enqueue("jobs", "greet", ["after"], {"dedup_key": "k"})
    assert after not in (holder, other)
    assert api.wait_status(after, "SUCCESS") == "SUCCESS"


def test_partition_key_is_stored(world: World, api: Api) -> None:
    workflow_id = api.enqueue("jobs", "greet", ["p"], {"partition_key": "tenant-9"})
    assert api.rows("SELECT partition_key FROM {}.workflows WHERE id = %s", workflow_id) == [
        ("tenant-9",)
    ]
    assert api.wait_status(workflow_id, "SUCCESS") == "SUCCESS"


def test_notifications_are_those_of_a_python_enqueue(world: World, api: Api, pg_url: str) -> None:
    """Every process of an app listens on the schema's channel: the SQL functions notify
    on it (a Python enqueue notifies its queue's channel, tests/test_queue_channels.py),
    with the payloads of store/queues.sql and store/queries.sql."""
    channel = Statements(api.schema).channel
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        ready = api.enqueue("parking", "greet", ["n"])
        delayed = api.enqueue("parking", "greet", ["d"], {"delay": 3600})
        api.send(ready, 1)
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=3)]
    (available,) = api.rows("SELECT available_at FROM {}.workflows WHERE id = %s", delayed)[0]
    assert payloads[0] == "q:parking"
    kind, epoch, queue = payloads[1].split(":")
    assert (kind, queue) == ("t", "parking")
    assert abs(float(epoch) - available.timestamp()) < 1e-3
    assert payloads[2] == f"m:{ready}"


def test_a_queue_name_with_quotes_is_a_value(world: World, api: Api) -> None:
    queue = 'it\'s "odd"; DROP TABLE x --'
    workflow_id = api.enqueue(queue, "greet", ["q"], {"allow_unknown": False})
    assert api.rows("SELECT queue_name FROM {}.workflows WHERE id = %s", workflow_id) == [(queue,)]


# ------------------------------------------------------------------ unknown names


def test_an_unknown_workflow_name_is_refused(world: World, api: Api) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        api.enqueue("jobs", "greeet", ["typo"])
    assert "no worker of this app has ever registered a workflow named 'greeet'" in str(
        caught.value
    )
    assert caught.value.diag.message_hint is not None
    assert "allow_unknown" in caught.value.diag.message_hint
    assert api.count("workflows") == 0
    # allowed explicitly: recorded, waiting, and the caller is told nobody serves it
    workflow_id = api.enqueue("jobs", "greeet", ["typo"], {"allow_unknown": True})
    assert api.status(workflow_id) == "ENQUEUED"
    unserved = "no live worker serves workflow 'greeet' on queue 'jobs'"
    assert [n for n in api.notices if unserved in n] == [unserved + WAITS]
    # once per session for each name and queue, also over a batch
    api.rows(
        "SELECT {0}.enqueue('jobs', 'greeet', jsonb_build_array(i), "
        "'{{\"allow_unknown\": true}}') FROM generate_series(1, 5) AS i"
    )
    assert [n for n in api.notices if unserved in n] == [unserved + WAITS]
    assert api.count("workflows") == 6
    api.enqueue("plain", "greeet", [], {"allow_unknown": True})
    assert sum("on queue 'plain'" in n for n in api.notices) == 1


def test_names_stay_known_after_the_workers_stop(
    make_app: Callable[..., durably.App], api: Api
) -> None:
    app = make_app()

    @app.workflow(name="nightly")
    def nightly() -> None: ...

    app.launch()
    app.shutdown()
    assert api.count("executors") == 0
    workflow_id = api.enqueue("jobs", "nightly")
    assert api.status(workflow_id) == "ENQUEUED"
    assert api.rows("SELECT name FROM {}.known_names") == [("nightly",)]


def test_a_new_name_on_a_later_beat_becomes_known(
    make_app: Callable[..., durably.App], api: Api
) -> None:
    """The trigger that fills known_names fires on a heartbeat that brings a new name."""
    app = make_app()

    @app.workflow(name="first")
    def first() -> None: ...

    app.launch()
    (executor_id,) = api.rows("SELECT id FROM {}.executors")[0]
    api.rows(
        "UPDATE {}.executors SET names = names || ARRAY['second'] WHERE id = %s RETURNING 1",
        executor_id,
    )
    names = {r[0] for r in api.rows("SELECT name FROM {}.known_names")}
    assert names == {"first", "second"}


# ------------------------------------------------------------------ send, events, status


def test_send(world: World, api: Api) -> None:
    workflow_id = api.enqueue("jobs", "listen", ["t"])
    api.send(workflow_id, ["first"], topic="t", key="k-1")
    api.send(workflow_id, ["again"], topic="t", key="k-1")  # the same key delivers once
    assert api.count("messages") == 1
    assert world.app.handle(workflow_id).result(timeout=DEADLINE) == ["first"]
    with pytest.raises(psycopg.errors.NoDataFound, match="no workflow with id 'nobody'"):
        api.send("nobody", {"lost": True})
    for bad_id, bad_key in (("", None), (None, None), (workflow_id, "")):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            api.call("send", bad_id, Jsonb(1), None, bad_key)
    assert api.count("messages") == 1


def test_get_event_and_status(world: World, api: Api) -> None:
    workflow_id = api.enqueue("jobs", "signals")
    assert api.wait_status(workflow_id, "SUCCESS") == "SUCCESS"
    assert api.get_event(workflow_id, "dict") == {"ok": True, "n": [1, 2]}
    assert api.get_event(workflow_id, "number") == 42
    assert api.get_event(workflow_id, "text") == "approved"
    assert api.get_event(workflow_id, "stage") == {
        "name": "packed", "at": "2024-05-01T12:00:00+00:00",
    }  # fmt: skip
    assert api.get_event(workflow_id, "twice") == "second"
    # set to None is JSON null; never set (or no such workflow) is SQL NULL
    query = "SELECT jsonb_typeof({0}.get_event(%s, %s)), {0}.get_event(%s, %s) IS NULL"
    assert api.rows(query, workflow_id, "nothing", workflow_id, "nothing") == [("null", False)]
    assert api.rows(query, workflow_id, "unset", workflow_id, "unset") == [(None, True)]
    assert api.rows(query, "nobody", "text", "nobody", "text") == [(None, True)]
    assert api.status("nobody") is None
    assert api.rows("SELECT {0}.workflow_status(NULL), {0}.get_event(NULL, 'k')") == [(None, None)]


# ------------------------------------------------------------------ bad input

MAX_TEXT = "x" * 513


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


BAD_ENQUEUES: list[tuple[str, Any, Any, Any, Any, str]] = [
    # (queue, name, args, options, sqlstate, message fragment)
    ("", "greet", None, None, "22023", "queue must be a non-empty string"),
    (None, "greet", None, None, "22023", "queue must be a non-empty string"),
    (MAX_TEXT, "greet", None, None, "22023", "queue must be a non-empty string"),
    ("jobs", "", None, None, "22023", "workflow_name must be a non-empty string"),
    ("jobs", None, None, None, "22023", "workflow_name must be a non-empty string"),
    ("jobs", "greeet", None, None, "22023", "ever registered a workflow named 'greeet'"),
    ("jobs", "greet", 42, None, "22023", "args must be a JSON array"),
    ("jobs", "greet", "ann", None, "22023", "got JSON string"),
    ("jobs", "greet", "raw:null", None, "22023", "got JSON null"),
    ("jobs", "greet", "raw:not json", None, "22P02", "invalid input syntax for type json"),
    ("jobs", "greet", {"who": "ann"}, None, "22023", 'the key(s) "who"'),
    ("jobs", "greet", {"args": "ann"}, None, "22023", '"args" as JSON string'),
    ("jobs", "greet", {"kwargs": ["ann"]}, None, "22023", '"kwargs" as JSON array'),
    ("jobs", "greet", "raw:[" + "[" * 999 + "]" * 999 + "]", None, "22023", "nested deeper than"),
    ("jobs", "greet", "raw:[1e4300]", None, "22023", "more than 4300 digits"),
    ("jobs", "greet", ["a"], [], "22023", "options must be a JSON object, got JSON array"),
    ("jobs", "greet", ["a"], {"prio": 1}, "22023", 'unknown option(s) "prio"'),
    ("jobs", "greet", ["a"], {"priority": 0}, "22023", "between 1 and 2147483647"),
    ("jobs", "greet", ["a"], {"priority": 2**31}, "22023", "between 1 and 2147483647"),
    ("jobs", "greet", ["a"], {"priority": -1}, "22023", "between 1 and 2147483647"),
    ("jobs", "greet", ["a"], {"priority": 1.5}, "22023", "between 1 and 2147483647"),
    ("jobs", "greet", ["a"], {"priority": "1"}, "22023", '"priority" must be a JSON number'),
    ("jobs", "greet", ["a"], {"priority": True}, "22023", '"priority" must be a JSON number'),
    ("jobs", "greet", ["a"], {"delay": -1}, "22023", '"delay" must be a number of seconds'),
    ("jobs", "greet", ["a"], {"delay": 1e10}, "22023", '"delay" must be a number of seconds'),
    ("jobs", "greet", ["a"], {"delay": "60"}, "22023", '"delay" must be a JSON number'),
    ("jobs", "greet", ["a"], {"timeout": 0}, "22023", '"timeout" must be a positive number'),
    ("jobs", "greet", ["a"], {"id": ""}, "22023", 'option "id" must be a non-empty string'),
    ("jobs", "greet", ["a"], {"id": MAX_TEXT}, "22023", "got 513 characters"),
    ("jobs", "greet", ["a"], {"id": "é" * 513}, "22023", "got 513 characters"),
    ("jobs", "greet", ["a"], {"id": "€" * 342}, "22023", '"id" is 1026 bytes of UTF-8'),
    ("€" * 342, "greet", ["a"], None, "22023", "queue is 1026 bytes of UTF-8"),
    ("jobs", "greet", ["a"], {"id": 7}, "22023", 'option "id" must be a JSON string'),
    ("jobs", "greet", ["a"], {"dedup_key": ""}, "22023", 'option "dedup_key" must be'),
    ("jobs", "greet", ["a"], {"partition_key": 1}, "22023", 'option "partition_key" must be'),
    ("jobs", "greet", ["a"], {"if_duplicate": "x"}, "22023", '"raise" or "existing"'),
    ("jobs", "greet", ["a"], {"allow_unknown": "yes"}, "22023", '"allow_unknown" must be'),
]


def test_bad_input_is_refused_and_nothing_is_written(world: World, api: Api) -> None:
    before = api.count("workflows")
    failures = []
    for queue, name, args, options, sqlstate, fragment in BAD_ENQUEUES:
        case = f"enqueue({queue!r:.30}, {name!r}, {args!s:.40}, {options!r})"
        try:
            api.enqueue(queue, name, args, options)
        except psycopg.Error as exc:
            if exc.sqlstate != sqlstate or fragment not in str(exc):
                failures.append(f"{case}: {exc.sqlstate} {exc}")
        else:
            failures.append(f"{case}: accepted")
    assert failures == []
    assert api.count("workflows") == before
    assert api.count("messages") == 0


def test_the_depth_limit_is_the_codec_s() -> None:
    """998 arrays inside the argument list (1000 levels with the stored object and its
    "args" array) is what Python's codec takes; one more it refuses, as the SQL does
    (the refusal is in BAD_ENQUEUES)."""
    codec = JsonCodec()
    codec.dumps({"args": [_nested(998)], "kwargs": {}})
    with pytest.raises(durably.DurablyError, match="nested deeper"):
        codec.dumps({"args": [_nested(999)], "kwargs": {}})


def test_the_deepest_value_the_codec_takes_is_accepted(world: World, api: Api) -> None:
    deepest = JsonCodec().dumps([_nested(998)])  # Jsonb (the json module) cannot write it
    workflow_id = api.enqueue("parking", "greet", "raw:" + deepest)
    assert api.status(workflow_id) == "ENQUEUED"


# ------------------------------------------------------------------ grants


def test_a_role_with_only_the_documented_grants(world: World, api: Api, pg_url: str) -> None:
    role = f"durably_sqlapi_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    ident, schema = sql.Identifier(role), sql.Identifier(api.schema)
    signatures = {
        "enqueue": "enqueue(text, text, jsonb, jsonb)",
        "send": "send(text, jsonb, text, text)",
        "get_event": "get_event(text, text)",
        "workflow_status": "workflow_status(text)",
    }
    try:
        api.conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password))
        )
    except psycopg.errors.InsufficientPrivilege:
        pytest.fail("the test database's user must be able to create roles (CREATEROLE)")
    try:
        api.conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, ident))
        for name in ("enqueue", "get_event", "workflow_status"):
            api.conn.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(
                    schema, sql.SQL(signatures[name]), ident
                )
            )
        with psycopg.connect(pg_url, user=role, password=password, autocommit=True) as conn:
            limited = Api(conn, api.schema)
            assert conn.execute("SELECT current_user").fetchone() == (role,)
            workflow_id = limited.enqueue("jobs", "signals", [], {"id": "from-role"})
            assert workflow_id == "from-role"
            assert limited.wait_status(workflow_id, "SUCCESS") == "SUCCESS"
            assert limited.get_event(workflow_id, "number") == 42
            # no right on the tables, nor on the function it was not granted
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.workflows (id, name, status, inputs, "
                        "max_recovery_attempts) VALUES ('forged', 'greet', 'ENQUEUED', "
                        "'{{}}', 1)"
                    ).format(schema)
                )
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT count(*) FROM {}.workflows").format(schema))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                limited.send(workflow_id, "not granted")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT {}.sql_api_inputs('[]')").format(schema))
        api.conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(
                schema, sql.SQL(signatures["send"]), ident
            )
        )
        listener = api.enqueue("jobs", "listen", ["t"])
        with psycopg.connect(pg_url, user=role, password=password, autocommit=True) as conn:
            Api(conn, api.schema).send(listener, "granted now", topic="t")
        assert world.app.handle(listener).result(timeout=DEADLINE) == "granted now"
        assert api.status("forged") is None
    finally:
        api.conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        api.conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_functions_are_not_executable_by_public(world: World, api: Api) -> None:
    rows = api.rows(
        "SELECT p.proname, p.prosecdef, p.proconfig, "
        "has_function_privilege('public', p.oid, 'EXECUTE') "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s ORDER BY p.proname",
        api.schema,
    )
    by_name = {r[0]: r[1:] for r in rows}
    assert set(by_name) >= {"enqueue", "send", "get_event", "workflow_status"}
    for name, (definer, config, public) in by_name.items():
        assert not public, f"{name} is executable by PUBLIC"
        assert config == ["search_path=pg_catalog, pg_temp"], name
        if name in ("enqueue", "send", "get_event", "workflow_status", "remember_names"):
            assert definer, f"{name} is not SECURITY DEFINER"


def test_the_migration_is_applied() -> None:
    assert "0007_sql_api.sql" in [name for _, name, _ in sqlfile.migrations()]
