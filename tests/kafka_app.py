"""The Kafka tests' workflow, shared by tests/test_kafka.py and its consumer process
(tests/kafka_proc.py): one run per message, each counted in a table of the test's
schema, so a message whose workflow ran twice (or never) shows."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

import durably
from durably.kafka import KafkaConsumer, KafkaMessage

WORKFLOW = "kafka_test.counted"
RUNS = "kafka_runs"


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
