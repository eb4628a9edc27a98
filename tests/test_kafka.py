"""Kafka, exactly once (durably.kafka), against librdkafka's built-in mock cluster.

The cluster (``test.mock.num.brokers``) runs inside the pytest process, which is never
killed: consumer processes connect to it by its bootstrap address and can die. Each
message's workflow counts its runs in a table of the test's schema (tests/kafka_app.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import psycopg
import pytest

import durably
from durably.kafka import (
    DEAD_LETTER,
    IDEMPOTENCY_HEADER,
    KafkaMessage,
    message_id,
    producer,
    publish,
    publish_async,
)
from kafka_app import (
    WORKFLOW,
    Runs,
    consumer_config,
    counting_consumer,
    create_runs_table,
    create_tx_runs_table,
)
from support import wait_until

TESTS = Path(__file__).resolve().parent
DEADLINE = 90.0


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The bootstrap address of a one-broker mock cluster living in this process
    (three brokers stalled a consumer group when tried)."""
    cluster = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    brokers = cluster.list_topics(timeout=10).brokers
    broker = next(iter(brokers.values()))
    yield f"{broker.host}:{broker.port}"
    cluster.flush(5)


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def runs(pg_url: str, schema: str, app: durably.App) -> Iterator[Runs]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        create_runs_table(conn, schema)
    counter = Runs(pg_url, schema)
    yield counter
    counter.close()


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    partition: int | None = None,
    first_key: int = 0,
) -> None:
    """Send ``values`` to ``topic`` (auto-created with 4 partitions), keyed by index."""
    out = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 3})
    for i, value in enumerate(values, first_key):
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        out.produce(topic, value=value, key=str(i).encode(), **extra)
    assert out.flush(30) == 0


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    probe = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: probe.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
    finally:
        probe.close()


def run_counts(db: psycopg.Connection[Any], topic: str) -> dict[tuple[int, int], int]:
    rows = db.execute("SELECT partition, key, n FROM kafka_runs WHERE topic = %s", (topic,))
    return {(p, k): n for p, k, n in rows.fetchall()}


def finished(db: psycopg.Connection[Any], prefix: str) -> dict[str, str]:
    rows = db.execute(
        "SELECT id, status FROM workflows WHERE id LIKE %s AND status IN ('SUCCESS', 'ERROR')",
        (prefix + "%",),
    )
    return dict(rows.fetchall())


# ------------------------------------------------------------------ one workflow per message


def test_each_message_runs_one_workflow_and_offsets_follow(
    app: durably.App,
    runs: Runs,
    db: psycopg.Connection[Any],
    bootstrap: str,
    topic: str,
    group: str,
) -> None:
    produce(bootstrap, topic, [f"v{i}".encode() for i in range(40)])
    consumer = counting_consumer(app, runs, bootstrap, group, topic)
    before = consumer.lag()
    assert {lag.partition for lag in before} == {0, 1, 2, 3}
    assert all(lag.committed is None for lag in before)
    assert sum(lag.lag for lag in before) == 40

    with consumer:
        counts = wait_until(
            lambda: (c := run_counts(db, topic)) and len(c) == 40 and c,
            DEADLINE,
            "40 messages run",
        )
        wait_until(lambda: sum(lag.lag for lag in consumer.lag()) == 0, DEADLINE, "no lag")
    assert set(counts.values()) == {1}
    highs = high_watermarks(bootstrap, topic)
    assert sum(highs.values()) == 40
    assert {lag.partition: lag.committed for lag in consumer.lag()} == highs

    # The workflow ID names the message; the workflow got the message itself.
    some = next(iter(counts))
    info = app.handle(message_id(group, topic, *some))
    assert info.result(timeout=10) == some[1]
    [row] = app.list_workflows(ids=[message_id(group, topic, *some)])
    assert row.name == WORKFLOW and row.status == durably.Status.SUCCESS
    message = row.inputs["args"][0]
    assert (message["topic"], message["partition"], message["offset"]) == (topic, *some)
    assert base64.b64decode(message["value"]).startswith(b"v")
    queued = db.execute(
        "SELECT DISTINCT queue_name FROM workflows WHERE id LIKE %s", (f"kafka:{group}:%",)
    ).fetchall()
    assert queued == [(f"kafka:{group}",)]
    assert not consumer.running and consumer.error is None
    consumer.stop()  # closes the client lag() used


def test_offsets_are_committed_only_once_the_batch_is_recorded(
    app: durably.App,
    runs: Runs,
    db: psycopg.Connection[Any],
    bootstrap: str,
    topic: str,
    group: str,
) -> None:
    produce(bootstrap, topic, [f"v{i}".encode() for i in range(10)], partition=0)
    consumer = counting_consumer(app, runs, bootstrap, group, topic)
    with db.transaction():
        # The batch's enqueue waits behind this lock (a real statement, held up).
        db.execute("LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
        consumer.start()
        wait_until(lambda: _waiting_enqueues(db) == 1, DEADLINE, "the enqueue to wait")
        # Polled, not recorded: not committed either.
        assert [lag.committed for lag in consumer.lag() if lag.partition == 0] == [None]
    with consumer:
        wait_until(lambda: len(run_counts(db, topic)) == 10, DEADLINE, "10 messages run")
        wait_until(
            lambda: [lag.committed for lag in consumer.lag() if lag.partition == 0] == [10],
            DEADLINE,
            "the offsets committed",
        )
    assert set(run_counts(db, topic).values()) == {1}
    consumer.stop()


def _waiting_enqueues(db: psycopg.Connection[Any]) -> int:
    """Enqueue statements waiting for a lock now."""
    # In a transaction, pg_stat_activity is read once unless its snapshot is cleared.
    db.execute("SELECT pg_stat_clear_snapshot()")
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        ("%queue_name, priority, dedup_key, partition_key%",),
    ).fetchone()
    return 0 if row is None else int(row[0])


def test_the_workflow_gets_a_message_rebuilt_from_its_hints(
    app: durably.App, bootstrap: str, topic: str, group: str
) -> None:
    got: list[KafkaMessage] = []

    @app.kafka_consumer(consumer_config(bootstrap, group), [topic])
    def keep(message: KafkaMessage) -> str:
        got.append(message)
        return message.topic

    assert keep.workflow.name.endswith(".keep")
    out = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 3})
    out.produce(topic, value=b"\x00\xffraw", key=None, partition=2, headers=[("h", b"1")])
    out.flush(10)
    with keep:
        wait_until(lambda: got, DEADLINE, "the message")
    [message] = got
    assert isinstance(message, KafkaMessage)
    assert (message.topic, message.partition, message.offset) == (topic, 2, 0)
    assert message.key is None and message.value == b"\x00\xffraw"
    assert message.headers == (("h", b"1"),) and message.header("h") == b"1"
    assert message.timestamp is not None and message.timestamp.tzinfo is not None


# ------------------------------------------------------------------ crashes and a second member


def _consumer_proc(
    pg_url: str, schema: str, bootstrap: str, group: str, topic: str, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(TESTS / "kafka_proc.py"), pg_url, schema, bootstrap, group, topic,
         *extra],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=TESTS.parent,
    )  # fmt: skip


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset per partition of ``topic`` (None: never committed),
    read by a client that joins nothing."""
    probe = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
        got = probe.committed(
            [confluent_kafka.TopicPartition(topic, p) for p in sorted(parts)], timeout=10
        )
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in got}
    finally:
        probe.close()


# Workflows of an executor that are PENDING with their transaction step committed.
CAUGHT = (
    "SELECT w.id FROM workflows w WHERE w.executor_id = %s AND w.status = 'PENDING' "
    "AND EXISTS (SELECT 1 FROM kafka_tx_runs r WHERE r.workflow_id = w.id)"
)


def test_a_consumer_and_worker_killed_mid_stream_loses_nothing_and_runs_nothing_twice(
    app: durably.App,
    db: psycopg.Connection[Any],
    pg_url: str,
    schema: str,
    bootstrap: str,
    topic: str,
    group: str,
    tmp_path: Path,
) -> None:
    """The consumer processes also run the workflows. Each workflow records its message
    in kafka_tx_runs by a transaction step (no unique constraint there: a message
    processed twice would show as two rows), then works a while in a plain step."""
    n = 400
    # This process runs nothing of the group's queue (it declares neither the queue nor
    # the workflow): everything runs in the processes that are killed and started.
    create_tx_runs_table(db, schema)
    produce(bootstrap, topic, [f"m{i}".encode() for i in range(n // 2)])
    logs = [tmp_path / f"consumer-{i}.log" for i in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # 1. A consumer and worker that SIGKILLs itself after its 3rd batch is recorded,
        #    before that batch's offsets are committed, while some of its workflows are
        #    between their transaction step and their end.
        first = _consumer_proc(
            pg_url, schema, bootstrap, group, topic, logs[0],
            "--executor-id", "kafka-a", "--crash-after-batches", "3",
        )  # fmt: skip
        procs.append(first)
        assert first.wait(DEADLINE) == -9, logs[0].read_text()
        recorded = db.execute(
            "SELECT count(*) FROM workflows WHERE id LIKE %s", (f"kafka:{group}:%",)
        ).fetchone()
        assert recorded is not None
        committed = sum(o or 0 for o in committed_offsets(bootstrap, group, topic).values())
        # The consumer died mid-batch: messages recorded whose offsets were not committed...
        assert recorded[0] > committed, (recorded[0], committed)
        # ...and the worker mid-workflow: its SQL committed, the workflow unfinished.
        caught = [wid for (wid,) in db.execute(CAUGHT, ("kafka-a",)).fetchall()]
        assert caught, logs[0].read_text()

        # 2. It restarts under the same executor ID (so it takes its unfinished workflows
        #    back at once); the rest of the stream arrives while it runs; a second
        #    consumer and worker joins the group and takes some partitions over.
        procs.append(
            _consumer_proc(
                pg_url, schema, bootstrap, group, topic, logs[1], "--executor-id", "kafka-a"
            )
        )
        wait_until(lambda: "started" in logs[1].read_text(), DEADLINE, "the restart")
        produce(bootstrap, topic, [f"m{i}".encode() for i in range(n // 2, n)], first_key=n // 2)
        procs.append(
            _consumer_proc(
                pg_url, schema, bootstrap, group, topic, logs[2], "--executor-id", "kafka-b"
            )
        )
        wait_until(
            lambda: "assigned " + topic in logs[2].read_text(),
            DEADLINE,
            "the second member's share",
        )

        statuses = wait_until(
            lambda: (f := finished(db, f"kafka:{group}:")) and len(f) >= n and f,
            DEADLINE,
            f"{n} workflows finished",
        )
        assert len(statuses) == n and set(statuses.values()) == {"SUCCESS"}
        highs = high_watermarks(bootstrap, topic)
        assert sum(highs.values()) == n
        rows = db.execute(
            "SELECT workflow_id, part, msg_offset, count(*) FROM kafka_tx_runs "
            "GROUP BY workflow_id, part, msg_offset"
        ).fetchall()
        # Every message was processed, each exactly once, under its own workflow ID.
        assert {(p, o) for _, p, o, _ in rows} == {
            (p, o) for p, high in highs.items() for o in range(high)
        }
        assert [r for r in rows if r[3] != 1] == []
        assert all(wid == message_id(group, topic, p, o) for wid, p, o, _ in rows)
        assert set(statuses) == {wid for wid, *_ in rows}
        # The workflows caught by the crash finished without recording again.
        assert all(statuses[wid] == "SUCCESS" for wid in caught)
        # The group's offsets reached the end of every partition.
        wait_until(
            lambda: committed_offsets(bootstrap, group, topic) == highs,
            DEADLINE,
            "offsets committed to the end",
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------ ordered, poison, dead letters


def test_ordered_partition_flows_past_a_poison_message_and_a_dead_letter(
    app: durably.App,
    runs: Runs,
    db: psycopg.Connection[Any],
    bootstrap: str,
    topic: str,
    group: str,
) -> None:
    @app.step(name="kafka_test.record")
    def record(partition: int, n: int) -> None:
        runs.count(topic, partition, n)

    @app.step(name="kafka_test.explode", retries=1, interval=0.01)
    def explode(n: int) -> None:
        raise ValueError(f"poison message {n}")

    @app.workflow(name="kafka_test.ordered")
    def handle(order: dict[str, Any]) -> int:
        record(order["p"], order["n"])
        if order.get("poison"):
            explode(order["n"])
        return int(order["n"])

    values = []
    for i in range(30):
        if i == 20:
            values.append(b"\xff not json")
        else:
            values.append(json.dumps({"p": 0, "n": i, "poison": i == 10}).encode())
    produce(bootstrap, topic, values, partition=0)
    produce(bootstrap, topic, [json.dumps({"p": 1, "n": i}).encode() for i in range(5)], 1)

    consumer = app.kafka_consumer(
        consumer_config(bootstrap, group), topic, handle, ordered=True, value_decoder=json.loads
    )
    with consumer:
        done = wait_until(
            lambda: (f := finished(db, f"kafka:{group}:")) and len(f) == 35 and f,
            DEADLINE,
            "35 workflows finished",
        )
    poison, dead = message_id(group, topic, 0, 10), message_id(group, topic, 0, 20)
    assert {wid for wid, status in done.items() if status == "ERROR"} == {poison, dead}

    # The poison message's workflow failed after its step's retries, and says why.
    [failed] = app.list_workflows(ids=[poison])
    assert failed.name == "kafka_test.ordered"
    assert isinstance(failed.error, durably.StepRetriesExceeded)
    assert "poison message 10" in str(failed.error)

    # The undecodable one is a dead letter: kept with its raw bytes and the decoder's error.
    [letter] = app.list_workflows(ids=[dead])
    assert letter.name == DEAD_LETTER
    assert isinstance(letter.error, durably.UndecodableMessage)
    assert "JSONDecodeError" in str(letter.error) or "UnicodeDecodeError" in str(letter.error)
    raw, error = letter.inputs["args"]
    assert base64.b64decode(raw["value"]) == b"\xff not json"
    assert (raw["partition"], raw["offset"]) == (0, 20) and "Decode" in error

    # Every other message ran once, and partition 0 ran in offset order, past both.
    counts = run_counts(db, topic)
    assert set(counts) == {(0, i) for i in range(30) if i != 20} | {(1, i) for i in range(5)}
    assert set(counts.values()) == {1}
    order = [
        key
        for (key,) in db.execute(
            "SELECT key FROM kafka_runs WHERE topic = %s AND partition = 0 ORDER BY seq", (topic,)
        ).fetchall()
    ]
    assert order == [i for i in range(30) if i != 20]
    # The queue holds one message per Kafka partition at a time.
    row = db.execute(
        "SELECT partition_concurrency FROM queues WHERE name = %s", (f"kafka:{group}",)
    ).fetchone()
    assert row == (1,)


def test_ordered_mode_follows_offsets_when_enqueue_times_collide(
    make_app: Callable[..., durably.App],
    runs: Runs,
    db: psycopg.Connection[Any],
    bootstrap: str,
    topic: str,
    group: str,
) -> None:
    """Ordered mode takes a partition's workflows in enqueue order; a batch's enqueues
    may share a timestamp, and then the offset decides (9 before 10, 99 before 100)."""
    n = 120
    produce(bootstrap, topic, [f"m{i}".encode() for i in range(n)], partition=0)
    # 1. A process that records the messages and runs nothing.
    recorder = make_app()
    recorder.launch(queues=[])
    with counting_consumer(recorder, runs, bootstrap, group, topic, ordered=True):
        wait_until(lambda: len(_queued(db, group)) == n, DEADLINE, f"{n} messages recorded")
    # 2. Every enqueue at the same instant, and the rows stored out of offset order (in
    #    descending text order of their IDs), so neither time nor storage order helps.
    with db.transaction():
        db.execute(
            "CREATE TEMP TABLE queued ON COMMIT DROP AS SELECT * FROM workflows WHERE id LIKE %s",
            (f"kafka:{group}:%",),
        )
        db.execute("DELETE FROM workflows WHERE id IN (SELECT id FROM queued)")
        db.execute('INSERT INTO workflows SELECT * FROM queued ORDER BY id COLLATE "C" DESC')
        db.execute("UPDATE workflows SET enqueued_at = '2025-01-01T00:00:00Z' WHERE id LIKE %s",
                   (f"kafka:{group}:%",))  # fmt: skip
    assert len({at for _, at in _queued(db, group)}) == 1
    # 3. A worker runs them: one at a time, in offset order.
    runner = make_app()
    counting_consumer(runner, runs, bootstrap, group, topic, ordered=True)  # never polls
    runner.launch()
    wait_until(
        lambda: len(finished(db, f"kafka:{group}:")) == n, DEADLINE, f"{n} workflows finished"
    )
    order = [
        key
        for (key,) in db.execute(
            "SELECT key FROM kafka_runs WHERE topic = %s ORDER BY seq", (topic,)
        ).fetchall()
    ]
    assert order == list(range(n))


def _queued(db: psycopg.Connection[Any], group: str) -> list[tuple[str, Any]]:
    return db.execute(
        "SELECT id, enqueued_at FROM workflows WHERE id LIKE %s AND status = 'ENQUEUED'",
        (f"kafka:{group}:%",),
    ).fetchall()


# ------------------------------------------------------------------ lifecycle


def test_the_consumer_stops_with_the_app(
    make_app: Callable[..., durably.App], bootstrap: str, topic: str, group: str
) -> None:
    app = make_app()

    @app.workflow()
    def echo(value: str) -> str:
        return value

    consumer = app.kafka_consumer(
        consumer_config(bootstrap, group), topic, echo, value_decoder=bytes.decode
    )
    produce(bootstrap, topic, [b"a", b"b"], partition=0)
    consumer.start()  # launches the app
    assert consumer.start() is consumer  # already running: nothing more
    second = message_id(group, topic, 0, 1)
    wait_until(lambda: _succeeded(app, second), DEADLINE, "the second message")
    assert app.handle(second).result(timeout=5) == "b"
    app.shutdown()
    wait_until(lambda: not consumer.running, DEADLINE, "the consumer to stop")
    assert consumer.error is None


def _succeeded(app: durably.App, workflow_id: str) -> bool:
    return [w.status for w in app.list_workflows(ids=[workflow_id])] == [durably.Status.SUCCESS]


# ------------------------------------------------------------------ bad input


def test_bad_settings_are_refused_before_anything_is_declared(
    app: durably.App, db: psycopg.Connection[Any], bootstrap: str, topic: str, group: str
) -> None:
    @app.workflow()
    def one(message: KafkaMessage) -> None: ...

    @app.workflow()
    def two(a: int, b: int) -> None: ...

    config = consumer_config(bootstrap, group)
    plain = app.queue("plain")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"config": {"bootstrap.servers": bootstrap}}, "group.id"),
        ({"config": {**config, "enable.auto.commit": True}}, "enable.auto.commit"),
        ({"config": {**config, "enable.auto.offset.store": "true"}}, "enable.auto.offset.store"),
        ({"topics": "orders:eu"}, "not a Kafka topic name"),
        ({"topics": "^orders.*"}, "patterns are not supported"),
        ({"topics": []}, "non-empty"),
        ({"workflow": two}, "takes one argument"),
        ({"queue": "undeclared"}, "not declared on this app"),
        ({"queue": plain, "ordered": True}, "partition_concurrency=1"),
        ({"batch_size": 0}, "batch_size"),
        ({"poll_timeout": 0}, "poll_timeout"),
        ({"value_decoder": "json"}, "value_decoder"),
        ({"ordered": "yes"}, "ordered"),
    ]
    for change, needle in cases:
        kwargs: dict[str, Any] = {"config": config, "topics": topic, "workflow": one, **change}
        with pytest.raises(durably.ConfigurationError, match=needle):
            app.kafka_consumer(**kwargs)
    assert db.execute("SELECT name FROM queues ORDER BY name").fetchall() == [("plain",)]


def test_without_confluent_kafka_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['confluent_kafka'] = None\n"
        "import durably\n"  # durably itself needs no Kafka
        "try:\n"
        "    import durably.kafka\n"
        "except ImportError as exc:\n"
        "    assert isinstance(exc, durably.ConfigurationError)\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'durably[kafka]'" in out.stdout, out.stderr


# ------------------------------------------------------------------ publishing from steps


def test_a_step_publishes_with_its_idempotency_key(
    app: durably.App, bootstrap: str, topic: str
) -> None:
    out = producer({"bootstrap.servers": bootstrap, "log_level": 3})

    @app.step()
    def announce(order: str) -> str:
        return publish(out, topic, f"placed {order}".encode())

    @app.step()
    def announce_lines(order: str) -> None:
        for i in range(2):
            publish(out, topic, f"line {i}".encode(), key=b"lines", part=i)

    @app.step()
    async def announce_async(order: str) -> str:
        return await publish_async(out, topic, b"async", key=b"async")

    @app.workflow()
    def place(order: str) -> str:
        key = announce(order)
        announce_lines(order)
        return key

    @app.workflow()
    async def place_async(order: str) -> str:
        return await announce_async(order)

    handle = place.options(id="order-7").start("o-7")
    assert handle.result(timeout=30) == "order-7:1"
    handle = place_async.options(id="order-8").start("o-8")
    assert handle.result(timeout=30) == "order-8:1"

    reader = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "auto.offset.reset": "earliest"}
    )
    reader.subscribe([topic])
    got: list[Any] = []
    try:
        wait_until(
            lambda: (
                got.extend(m for m in reader.consume(10, 0.5) if m.error() is None) or len(got) >= 3
            ),
            DEADLINE,
            "the published messages",
        )
    finally:
        reader.close()
    keys = {(m.key(), dict(m.headers())[IDEMPOTENCY_HEADER]) for m in got}
    assert keys == {
        (b"order-7", b"order-7:1"),
        (b"lines", b"order-7:2:0"),
        (b"lines", b"order-7:2:1"),
        (b"async", b"order-8:1"),
    }
    with pytest.raises(durably.NotInWorkflow):
        publish(out, topic, b"outside a step")
    with pytest.raises(durably.ConfigurationError, match=r"enable\.idempotence"):
        producer({"bootstrap.servers": bootstrap, "enable.idempotence": False})


# ------------------------------------------------------------------ the package's place


def test_only_the_app_method_imports_the_kafka_package() -> None:
    """durably.kafka is an optional extra: nothing of durably needs it, and the App
    imports it only when ``kafka_consumer`` is called (or for type checking)."""
    import ast

    src = TESTS.parent / "src" / "durably"
    found = []
    for path in sorted(src.rglob("*.py")):
        if (src / "kafka") in path.parents:
            continue
        tree = ast.parse(path.read_text())
        at_module_level = {id(node) for node in tree.body}
        checking = [
            node
            for node in tree.body
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
        ]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("durably.kafka"):
                typing_only = any(node in ast.walk(block) for block in checking)
                found.append((path.name, id(node) in at_module_level, typing_only))
    assert found and all(name == "app.py" for name, _, _ in found), found
    assert not [f for f in found if f[1] and not f[2]], "a module-level import of durably.kafka"
