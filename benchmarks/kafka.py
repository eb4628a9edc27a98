"""Kafka: messages per second from produce to finished workflow (durably.kafka).

    python -m benchmarks.kafka [--quick] [--repeats N] [--database-url URL]

A librdkafka mock cluster (one broker, in this process) holds a topic of 4 partitions.
Worker processes (``python -m benchmarks.kafka child ...``) each run an App that serves
the consumer's queue; those with the consumer role also poll the topic in the same
consumer group (one partition each with 4 of them). Once every partition is assigned,
this process produces N small messages, and the figure is N divided by the time from
the first produce to the last workflow's completion (``completed_at``). The recording
rate (to the last workflow's ``created_at``) shows where the time goes: polling and
enqueueing, or running the workflows.

The children's consumers set ``fetch.wait.max.ms`` to 10: the mock broker holds a fetch
that found nothing for that long even when a message arrives meanwhile (a real broker
answers at once), which would add half a second to a lone message.

Layouts measured: 1 process that consumes and runs; 4 processes that each consume and
run; 1 consumer-only process and 4 that only run. The workflows are no-ops taking the
``KafkaMessage``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any

import psycopg

import durably
from benchmarks.core import (
    Child,
    Context,
    Measurement,
    Target,
    benchmark,
    percentile,
    wait_until,
)

PARTITIONS = 4
GROUP = "bench"
NOOP = "bench.kafka_noop"
# (label, roles of the processes): "both" consumes and runs, "consumer" only polls and
# records, "worker" only runs.
LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("w1", ("both",)),
    ("w4", ("both",) * 4),
    ("c1w4", ("consumer",) + ("worker",) * 4),
)
LABELS = {
    "w1": "1 process (consumer + worker)",
    "w4": "4 processes (each consumer + worker)",
    "c1w4": "1 consumer process + 4 worker processes",
}


# ---------------------------------------------------------------------- the child


def _app(url: str, schema: str, bootstrap: str, topic: str) -> tuple[durably.App, Any]:
    app = durably.App(url, schema=schema)

    from durably.kafka import KafkaMessage

    @app.workflow(name=NOOP)
    def kafka_noop(message: KafkaMessage) -> None:
        return None

    # The mock broker answers a fetch only after fetch.wait.max.ms (500 by default) when
    # it had nothing at first; a real broker answers as soon as a message arrives.
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": GROUP,
        "fetch.wait.max.ms": 10,
        "log_level": 3,
    }
    return app, app.kafka_consumer(config, topic, kafka_noop, batch_size=1000)


class _Assignments(logging.Handler):
    """Says on stdout how many partitions the consumer holds after each rebalance."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if " assigned " in text:
            print(json.dumps({"assigned": text.count("[")}), flush=True)
        elif " revoked " in text or " lost " in text:
            print(json.dumps({"assigned": 0}), flush=True)


def child(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    for name in ("url", "schema", "bootstrap", "topic", "role"):
        p.add_argument(f"--{name}", required=True)
    args = p.parse_args(argv)
    kafka_log = logging.getLogger("durably.kafka")
    kafka_log.setLevel(logging.INFO)
    kafka_log.addHandler(_Assignments())
    app, consumer = _app(args.url, args.schema, args.bootstrap, args.topic)
    app.launch(queues=[] if args.role == "consumer" else None)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            break
    if args.role != "worker":
        consumer.start()
    for _ in sys.stdin:  # until the parent closes stdin
        pass
    consumer.stop()
    app.shutdown(grace=5)


# ---------------------------------------------------------------------- the parent


class _Member:
    """A child process and the number of partitions it holds (read from its lines)."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.assigned = 0
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        while True:
            try:
                line = self.child.line(timeout=3600)
            except (RuntimeError, TimeoutError):
                return
            if line.startswith("{"):
                self.assigned = int(json.loads(line)["assigned"])


def _producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3})


def _produce(out: Any, topic: str, n: int, first: int = 0) -> None:
    value = b"x" * 16
    for i in range(first, first + n):
        while True:
            try:
                out.produce(topic, value=value, partition=i % PARTITIONS)
                break
            except BufferError:  # the local queue is full: let it drain
                out.poll(0.01)
    assert out.flush(60) == 0


def _finished(conn: psycopg.Connection[Any], schema: str) -> tuple[int, float, float]:
    row = conn.execute(
        f"SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
        f"extract(epoch FROM max(created_at)), extract(epoch FROM max(completed_at)) "
        f'FROM "{schema}".workflows WHERE queue_name = %s',
        (f"kafka:{GROUP}",),
    ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0), float(row[2] or 0)


def one_run(
    ctx: Context, bootstrap: str, roles: tuple[str, ...], n: int, lone: int = 0
) -> tuple[float, float, list[float]]:
    """Produce ``n`` messages to a consumer group of child processes: (end-to-end
    messages/s, recorded messages/s, and the produce-to-finish latencies of ``lone``
    messages sent one at a time afterwards)."""
    topic = f"bench-{time.monotonic_ns()}"
    out = _producer(bootstrap)
    with ctx.schema() as schema, ctx.connect() as conn:
        _produce(out, topic, PARTITIONS)  # creates the topic; one warm-up each
        members = [
            _Member(
                Child([sys.executable, "-m", "benchmarks.kafka", "child", "--url", ctx.url,
                       "--schema", schema, "--bootstrap", bootstrap, "--topic", topic,
                       "--role", role])
            )
            for role in roles
        ]  # fmt: skip
        try:
            for member in members:
                member.child.expect("ready")
            for member in members:
                member.thread.start()
                member.child.send("go")
            consumers = [m for m, role in zip(members, roles, strict=True) if role != "worker"]
            wait_until(
                lambda: (
                    sum(m.assigned for m in consumers) == PARTITIONS
                    and all(m.assigned for m in consumers[:PARTITIONS])
                ),
                timeout=120,
                what="every partition assigned",
            )
            wait_until(
                lambda: _finished(conn, schema)[0] >= PARTITIONS,
                timeout=120,
                what="the warm-up messages",
            )
            started = time.time()
            _produce(out, topic, n, PARTITIONS)
            produced = time.time() - started
            wait_until(
                lambda: _finished(conn, schema)[0] >= n + PARTITIONS,
                timeout=900,
                what=f"{n} workflows",
                interval=0.1,
            )
            _, last_created, last_done = _finished(conn, schema)
            ctx.log(
                f"{'+'.join(roles)}: produced in {produced:.2f} s, recorded by "
                f"{last_created - started:.2f} s, done by {last_done - started:.2f} s"
            )
            latencies = []
            for i in range(lone):
                sent = time.time()
                _produce(out, topic, 1, i)
                target = n + PARTITIONS + i + 1
                wait_until(
                    lambda target=target: _finished(conn, schema)[0] >= target,
                    timeout=60,
                    what="a lone message",
                    interval=0.001,
                )
                latencies.append(_finished(conn, schema)[2] - sent)
            return n / (last_done - started), n / (last_created - started), latencies
        finally:
            for member in members:
                member.child.close()


@benchmark("kafka", default=False)
def kafka(ctx: Context) -> list[Measurement]:
    """Kafka messages to finished no-op workflows, 1 and 4 worker processes."""
    from confluent_kafka import Producer

    n = ctx.size(20_000, 2_000)
    lone = ctx.size(50, 10)
    cluster = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    broker = next(iter(cluster.list_topics(timeout=10).brokers.values()))
    bootstrap = f"{broker.host}:{broker.port}"
    out: list[Measurement] = []
    for label, roles in LAYOUTS:
        ends: list[float] = []
        recorded: list[float] = []
        p50s: list[float] = []
        for _ in range(ctx.heavy_repeats):
            end, rec, latencies = one_run(ctx, bootstrap, roles, n, lone if label == "w1" else 0)
            ends.append(end)
            recorded.append(rec)
            line = f"{LABELS[label]}: {end:,.0f} messages/s, recorded {rec:,.0f}/s"
            if latencies:
                p50s.append(percentile(latencies, 50) * 1000)
                line += f", a lone message in {p50s[-1]:.1f} ms (p50)"
            ctx.log(line)
        out += [
            Measurement(
                f"kafka.{label}.msg_per_s",
                f"Kafka produce -> finished workflow, {LABELS[label]}",
                "/s", ends, target=Target("min", 5000.0) if label == "w4" else None,
                note=f"{n:,} messages, 4 partitions, mock broker", comparable=False,
            ),
            Measurement(
                f"kafka.{label}.recorded_per_s",
                f"Kafka produce -> workflow recorded (enqueued), {LABELS[label]}",
                "/s", recorded, note="to the last created_at", comparable=False,
            ),
        ]  # fmt: skip
        if p50s:
            out.append(
                Measurement(
                    f"kafka.{label}.lone_p50",
                    f"Kafka produce -> finished workflow, one message at a time: p50, "
                    f"{LABELS[label]}",
                    "ms", p50s, note=f"{lone} messages sent one by one", comparable=False,
                )
            )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        child(argv[1:])
        return 0
    from benchmarks import run

    if "--output" not in argv:
        argv = [*argv, "--output", str(run.RESULTS_DIR / "kafka.md")]
    return run.main(["--only", "kafka", "--no-chart", *argv])


if __name__ == "__main__":
    sys.exit(main())
