"""The Kafka tests' workflows, shared by tests/test_kafka.py and its consumer process
(tests/kafka_proc.py): one run per message, each counted in a table of the test's
schema, so a message whose workflow ran twice (or never) shows."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import sql

import durably
from durably.kafka import KafkaConsumer, KafkaMessage

WORKFLOW = "kafka_test.counted"
RUNS = "kafka_runs"
TX_WORKFLOW = "kafka_test.tx_counted"


def consumer_config(bootstrap: str, group: str, **more: Any) -> dict[str, Any]:
    """A consumer of the mock cluster that notices a killed member within seconds."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        # The mock broker holds an empty fetch this long, even when messages arrive.
        "fetch.wait.max.ms": 20,
        **more,
    }


def create_runs_table(conn: psycopg.Connection[Any], schema: str) -> None:
    """kafka_runs: one row per (topic, partition, key) that ran, ``n`` times, ``seq`` in
    the order of the first runs."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.kafka_runs (topic text, partition int, key bigint, "
            "n int NOT NULL, seq bigserial, PRIMARY KEY (topic, partition, key))"
        ).format(sql.Identifier(schema))
    )


class Runs:
    """Counts runs in kafka_runs, on one connection shared by the workflow's threads."""

    def __init__(self, url: str, schema: str) -> None:
        self._url, self._schema = url, schema
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def count(self, topic: str, partition: int, key: int) -> None:
        with self._lock:
            if self._conn is None:
                self._conn = psycopg.connect(self._url, autocommit=True)
            self._conn.execute(
                sql.SQL(
                    "INSERT INTO {}.kafka_runs (topic, partition, key, n) VALUES (%s, %s, %s, 1) "
                    "ON CONFLICT (topic, partition, key) DO UPDATE SET n = kafka_runs.n + 1"
                ).format(sql.Identifier(self._schema)),
                (topic, partition, key),
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def counting_consumer(
    app: durably.App, runs: Runs, bootstrap: str, group: str, topic: str, **options: Any
) -> KafkaConsumer:
    """The consumer of ``topic`` whose workflow counts each message by its offset."""

    @app.step(name="kafka_test.count")
    def count(topic: str, partition: int, offset: int) -> None:
        runs.count(topic, partition, offset)

    @app.workflow(name=WORKFLOW)
    def counted(message: KafkaMessage) -> int:
        count(message.topic, message.partition, message.offset)
        return message.offset

    return app.kafka_consumer(consumer_config(bootstrap, group), topic, counted, **options)


def create_tx_runs_table(conn: psycopg.Connection[Any], schema: str) -> None:
    """kafka_tx_runs: one row per run of a message's transaction step. No unique
    constraint, on purpose: a message processed twice shows as two rows."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.kafka_tx_runs (workflow_id text NOT NULL, "
            "topic text NOT NULL, part int NOT NULL, msg_offset bigint NOT NULL, "
            "executor text NOT NULL)"
        ).format(sql.Identifier(schema))
    )


def transactional_consumer(
    app: durably.App,
    schema: str,
    executor: str,
    bootstrap: str,
    group: str,
    topic: str,
    work_seconds: float = 0.0,
    **options: Any,
) -> KafkaConsumer:
    """The consumer of ``topic`` whose workflow records its message in kafka_tx_runs by
    a transaction step (the row commits with the step's checkpoint), then works for
    ``work_seconds`` in a plain step: a crash in that time leaves the row committed and
    the workflow PENDING, to be recovered without recording again."""
    insert = sql.SQL(
        "INSERT INTO {}.kafka_tx_runs (workflow_id, topic, part, msg_offset, executor) "
        "VALUES (%s, %s, %s, %s, %s)"
    ).format(sql.Identifier(schema))

    @app.transaction(name="kafka_test.record", isolation="read committed")
    def record(conn: psycopg.Connection[Any], topic: str, partition: int, offset: int) -> None:
        conn.execute(insert, (durably.workflow_id(), topic, partition, offset, executor))

    @app.step(name="kafka_test.work")
    def work() -> None:
        time.sleep(work_seconds)

    @app.workflow(name=TX_WORKFLOW)
    def tx_counted(message: KafkaMessage) -> int:
        record(message.topic, message.partition, message.offset)
        work()
        return message.offset

    return app.kafka_consumer(consumer_config(bootstrap, group), topic, tx_counted, **options)
